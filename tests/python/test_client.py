"""The Python client (clients/python/corral) against a real daemon: corral.run must behave like
subprocess.run for the same commands (checked side by side, case by case), and must keep the
guarantees subprocess.run breaks: at a timeout the whole tree is gone before the exception is
raised, nothing is left running, no zombie, no leaked fd, from 30 threads or from asyncio."""

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from pyclient_helpers import PAYLOAD, Daemon, kill_pids, procs_with_env, wait_until
from pyclient_helpers import daemon, marker, no_zombie_children, sock  # noqa: F401 (fixtures)

import corral
import corral.aio


def mark(marker, **extra):
    return {"CORRAL_TEST_MARK": marker, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **extra}


def outcome(fn):
    """What a call did, in comparable form: ("ok", returncode, stdout, stderr) or the exception
    type with the fields subprocess's exceptions carry."""
    try:
        r = fn()
    except subprocess.CalledProcessError as e:
        return ("CalledProcessError", e.returncode, e.cmd, e.output, e.stderr)
    except subprocess.TimeoutExpired as e:
        return ("TimeoutExpired", e.cmd, e.timeout, e.output, e.stderr)
    except OSError as e:
        return (type(e).__name__, e.errno, e.filename)
    except (ValueError, TypeError) as e:
        return (type(e).__name__,)
    return ("ok", r.args, r.returncode, r.stdout, r.stderr)


CASES = [
    ("true", ["true"], {}),
    ("exit-code", ["sh", "-c", "exit 3"], {}),
    ("bytes", ["sh", "-c", "echo out; echo err >&2"], {}),
    ("text", ["sh", "-c", "echo out; echo err >&2"], {"text": True}),
    ("universal_newlines", ["sh", "-c", "echo out"], {"universal_newlines": True}),
    ("crlf-translated", ["sh", "-c", r"printf 'a\r\nb\rc'"], {"text": True}),
    ("crlf-bytes-kept", ["sh", "-c", r"printf 'a\r\nb\rc'"], {}),
    ("shell-string", "echo hi; echo there >&2; exit 7", {"shell": True}),
    ("shell-list", ["echo $0 $1", "zero", "one"], {"shell": True}),
    ("str-program", "true", {}),
    ("input-bytes", ["cat"], {"input": b"abc\ndef"}),
    ("input-text", ["cat"], {"input": "h\u00e9llo\r\nx", "text": True}),
    ("input-str-without-text", ["cat"], {"input": "x"}),
    ("no-input-is-empty", ["cat"], {}),
    ("signal", ["sh", "-c", "kill -TERM $$"], {}),
    ("check-ok", ["true"], {"check": True}),
    ("check-fails", ["sh", "-c", "echo o; echo e >&2; exit 5"], {"check": True}),
    ("check-fails-text", ["sh", "-c", "echo o; exit 2"], {"check": True, "text": True}),
    ("check-signal", ["sh", "-c", "kill -KILL $$"], {"check": True}),
    ("encoding", ["sh", "-c", "printf '\\303\\251'"], {"encoding": "latin-1"}),
    ("not-found", ["corral-no-such-program-xyz"], {}),
    ("not-executable", ["/etc/passwd"], {}),
    ("bad-cwd", ["true"], {"cwd": "/nonexistent-corral-dir"}),
    ("cwd", [PAYLOAD, "print-cwd"], {"cwd": "/usr/share"}),
    ("env-replaces", [PAYLOAD, "print-env", "HOME"], {"env": {"A": "1"}}),
    ("env-value", [PAYLOAD, "print-env", "A"], {"env": {"A": "x y"}}),
    ("stdout-pipe-only", ["sh", "-c", "echo x"], {"stdout": subprocess.PIPE}),
    ("stderr-pipe-stdout-devnull", ["sh", "-c", "echo x; echo y >&2"],
     {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}),
    ("stderr-to-stdout", ["sh", "-c", "echo a; echo b >&2; echo c"],
     {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}),
    ("shell-stderr-to-stdout", "echo a; echo b >&2", {"shell": True, "stdout": subprocess.PIPE,
                                                       "stderr": subprocess.STDOUT}),
    ("capture-and-stdout", ["true"], {"stdout": subprocess.PIPE, "capture_output": True}),
    ("timeout-keeps-output", ["sh", "-c", "echo before; echo err >&2; exec sleep 60"],
     {"timeout": 1.0}),
    ("timeout-text-output-is-bytes", ["sh", "-c", "echo before; exec sleep 60"],
     {"timeout": 1.0, "text": True}),
    ("timeout-no-output-is-none", ["sleep", "60"], {"timeout": 0.3}),
    ("no-timeout-when-quick", ["true"], {"timeout": 5}),
]


@pytest.mark.parametrize("args,kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_as_subprocess_run(sock, args, kwargs):
    kw = dict(kwargs)
    if not {"stdout", "stderr", "capture_output"} & set(kw):
        kw["capture_output"] = True  # corral's default; subprocess's is to inherit
    want = outcome(lambda: subprocess.run(args, **kw))
    got = outcome(lambda: corral.run(args, socket=sock, **kw))
    assert got == want


def test_inherited_stdout_is_written_to_fd_1(sock, capfd):
    subprocess.run(["sh", "-c", "echo to-out; echo to-err >&2"])
    want = capfd.readouterr()
    r = corral.run(["sh", "-c", "echo to-out; echo to-err >&2"], capture_output=False,
                   socket=sock)
    assert (r.stdout, r.stderr) == (None, None)
    assert capfd.readouterr() == want == ("to-out\n", "to-err\n")


def test_stdout_to_a_file(sock, tmp_path):
    with open(tmp_path / "out", "wb") as f:
        corral.run(["echo", "in a file"], stdout=f, socket=sock)
    assert (tmp_path / "out").read_bytes() == b"in a file\n"


def test_env_none_sends_the_callers_environment_and_cwd(sock, monkeypatch, tmp_path):
    monkeypatch.setenv("CORRAL_PY_VAR", "from-the-caller")
    monkeypatch.chdir(tmp_path)
    r = corral.run([PAYLOAD, "print-env", "CORRAL_PY_VAR", "+", "print-cwd"], text=True,
                   socket=sock)
    assert r.stdout == f"from-the-caller\n{tmp_path}\n"
    r = corral.run(["cat", "f"], input=None, cwd=".", socket=sock)  # relative to the caller
    assert r.returncode == 1 and b"No such file" in r.stderr


def test_defaults_capture_and_full_result(sock):
    r = corral.run(["sh", "-c", "echo out; echo err >&2; exit 4"], socket=sock)
    assert (r.returncode, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
    res = r.result
    assert isinstance(res, corral.Result)
    assert res.state == "exited" and res.exit_code == 4 and res.stdout_bytes == 4
    full = corral.run_result(["sh", "-c", "exit 9"], socket=sock)
    assert full.state == "exited" and full.returncode == 9 and full.containment
    full = corral.run_result(["sleep", "60"], timeout=0.2, socket=sock)
    assert full.state == "timed_out" and full.reason == "timeout" and full.returncode < 0


def test_output_is_capped_and_flagged(sock):
    r = corral.run_result([PAYLOAD, "flood-stdout", str(10 << 20)], max_output_bytes=4096,
                          socket=sock)
    assert r.state == "exited" and len(r.stdout) == 4096 and r.stdout_truncated
    assert r.stdout_bytes == 10 << 20


def test_invalid_arguments_are_refused_before_running(sock):
    with pytest.raises(ValueError, match="UTF-8"):
        corral.run(["cat"], input=b"\xff\xfe", socket=sock)
    with pytest.raises(ValueError, match="NUL"):
        corral.run(["cat"], input=b"a\0b", socket=sock)
    with pytest.raises(TypeError, match="preexec_fn"):
        corral.run(["true"], preexec_fn=lambda: None, socket=sock)
    with pytest.raises(corral.InvalidParams):
        corral.run(["true"], memory_bytes=-1, socket=sock)


def test_limits_are_passed(sock, marker):
    r = corral.run_result([PAYLOAD, "fork-bomb"], pids=10, timeout=10, env=mark(marker),
                          socket=sock)
    assert r.pids_peak <= 10 and "pids" in r.limits_hit


# ---------------------------------------------------------------------------------------------
# Timeouts: the exception comes after the whole tree is gone, within timeout + a small bound.


@pytest.mark.parametrize("cmd", [
    [PAYLOAD, "setsid-escape", "60", "+", "sleep", "60"],
    [PAYLOAD, "tree", "6", "60", "+", "fork-orphans", "3", "60", "+", "sleep", "60"],
], ids=["setsid-grandchild", "tree-and-orphans"])
def test_timeout_kills_the_whole_tree_before_raising(sock, marker, cmd):
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        corral.run(cmd, timeout=0.5, env=mark(marker), socket=sock)
    elapsed = time.monotonic() - start
    assert procs_with_env(marker) == []  # at once: no polling, the daemon waited for it
    assert 0.5 <= elapsed < 0.5 + 1.5, elapsed
    assert ei.value.result.state == "timed_out"
    assert ei.value.cmd == cmd and ei.value.timeout == 0.5


def test_timeout_of_a_tree_that_ignores_sigterm_is_bounded_by_grace(sock, marker):
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        corral.run([PAYLOAD, "ignore-sigterm", "60"], timeout=0.3, grace_s=0.3,
                   env=mark(marker), socket=sock)
    assert time.monotonic() - start < 0.3 + 0.3 + 1.5
    assert ei.value.result.signal == "SIGKILL"
    assert procs_with_env(marker) == []


def test_subprocess_run_leaves_the_escapee_that_corral_kills(sock, marker):
    """The reason for all this, shown side by side: subprocess.run(timeout=) leaves the setsid'd
    grandchild alive; corral.run does not."""
    cmd = [PAYLOAD, "setsid-escape", "60", "+", "sleep", "60"]
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(cmd, timeout=0.5, env=mark(marker), stdout=subprocess.DEVNULL)
    escaped = procs_with_env(marker)
    kill_pids(escaped)  # clean up the baseline's leak, by pid
    wait_until(lambda: not procs_with_env(marker), what="baseline escapee killed")
    assert len(escaped) == 1
    with pytest.raises(subprocess.TimeoutExpired):
        corral.run(cmd, timeout=0.5, env=mark(marker), socket=sock)
    assert procs_with_env(marker) == []


# ---------------------------------------------------------------------------------------------
# Threads, asyncio, the rest of the API


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def test_30_threads(sock, marker):
    """30 threads at once: quick commands, commands leaving orphans, timeouts with escapees.
    Every answer is right, nothing survives, no fd leaks into the caller."""
    before = fd_count()
    results, errors = {}, []

    def one(i):
        try:
            kind = i % 3
            if kind == 0:
                r = corral.run([PAYLOAD, "echo", str(i)], env=mark(marker), socket=sock)
                results[i] = r.stdout
            elif kind == 1:
                r = corral.run([PAYLOAD, "fork-orphans", "2", "60", "+", "echo", str(i)],
                               env=mark(marker), socket=sock, check=True)
                results[i] = r.stdout
            else:
                try:
                    corral.run([PAYLOAD, "setsid-escape", "60", "+", "sleep", "60"],
                               timeout=0.5, env=mark(marker), socket=sock)
                except subprocess.TimeoutExpired as e:
                    results[i] = e.result.state
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert time.monotonic() - start < 15
    assert results == {i: (b"%d\n" % i if i % 3 != 2 else "timed_out") for i in range(30)}
    assert procs_with_env(marker) == []
    assert fd_count() == before


def test_asyncio_run_concurrently(sock, marker):
    async def main():
        quick = [corral.aio.run([PAYLOAD, "echo", str(i)], text=True, socket=sock)
                 for i in range(20)]
        slow = corral.aio.run([PAYLOAD, "setsid-escape", "60", "+", "sleep", "60"],
                              timeout=0.5, env=mark(marker), socket=sock)
        return await asyncio.gather(*quick, slow, return_exceptions=True)

    start = time.monotonic()
    out = asyncio.run(main())
    assert time.monotonic() - start < 5
    assert [r.stdout for r in out[:20]] == [f"{i}\n" for i in range(20)]
    assert isinstance(out[20], subprocess.TimeoutExpired)
    assert procs_with_env(marker) == []
    with pytest.raises(subprocess.CalledProcessError):
        asyncio.run(corral.aio.run(["false"], check=True, socket=sock))


def test_asyncio_cancel_kills_the_cell(sock, marker):
    async def main():
        task = asyncio.ensure_future(corral.aio.run(
            [PAYLOAD, "tree", "3", "60", "+", "sleep", "60"], env=mark(marker), socket=sock))
        deadline = time.monotonic() + 10
        while len(procs_with_env(marker)) < 4:
            assert time.monotonic() < deadline, "tree did not come up"
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_until(lambda: not procs_with_env(marker), timeout=5, what="cancelled cell torn down")


def test_start_wait_output_kill_list_stats(sock, marker, tmp_path):
    cid = corral.start(["sh", "-c", "echo one; sleep 0.3; echo two"], env=mark(marker),
                       socket=sock)
    assert corral.wait(cid, timeout=0.05, socket=sock) is None
    assert cid in [c.id for c in corral.list_cells(socket=sock)]
    res = corral.wait(cid, socket=sock)
    assert res.stdout == "one\ntwo\n" and res.ok
    page = corral.output(cid, offset=4, socket=sock)
    assert (page.data, page.next_offset, page.done) == ("two\n", 8, True)

    long = corral.start([PAYLOAD, "tree", "3", "60", "+", "sleep", "60"], env=mark(marker),
                        socket=sock)
    wait_until(lambda: len(procs_with_env(marker)) == 4, what="tree up")
    corral.kill(long, socket=sock)
    res = corral.wait(long, socket=sock)
    assert res.state == "cancelled" and procs_with_env(marker) == []

    log = os.path.join(tmp_path, "sig")
    usr = corral.start([PAYLOAD, "on-signal", str(int(signal.SIGUSR1)), "7", "60", log],
                       socket=sock)
    wait_until(lambda: os.path.exists(log) and b"ready" in open(log, "rb").read(),
               what="handler in place")
    corral.kill(usr, signal.SIGUSR1, socket=sock)
    res = corral.wait(usr, socket=sock)
    assert res.exit_code == 7 and b"got %d" % signal.SIGUSR1 in open(log, "rb").read()

    st = corral.stats(socket=sock)
    assert st["running"] == 0 and st["finished"].get("cancelled", 0) >= 1
    with pytest.raises(corral.InvalidParams):
        corral.wait("d-0-0", socket=sock)


def test_queue_submit_and_wait_task(sock, marker):
    try:
        tid = corral.submit([PAYLOAD, "echo", "queued"], retries=1, group="pytest",
                            env=mark(marker), socket=sock)
    except corral.MethodNotFound:
        pytest.skip("this daemon has no task queue yet (`submit` answers -32601)")
    task = corral.wait_task(tid, timeout=30, socket=sock)
    assert "queued" in str(task), task
    assert procs_with_env(marker) == []


# ---------------------------------------------------------------------------------------------
# No daemon


def test_daemon_not_running_names_the_socket_and_the_fix(tmp_path):
    missing = str(tmp_path / "no.sock")
    with pytest.raises(corral.DaemonNotRunning) as ei:
        corral.run(["true"], socket=missing)
    e = ei.value
    assert isinstance(e, ConnectionError) and isinstance(e, OSError)
    assert missing in str(e) and "corral daemon" in str(e) and e.path == missing

    dead = str(tmp_path / "dead.sock")  # a socket file nobody accepts on: ECONNREFUSED
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    s.close()
    with pytest.raises(corral.DaemonNotRunning, match="dead.sock"):
        corral.stats(socket=dead)
    with pytest.raises(corral.DaemonNotRunning):
        asyncio.run(corral.aio.run(["true"], socket=dead))


def test_socket_path_resolution(monkeypatch, sock):
    monkeypatch.setenv("CORRAL_SOCKET", sock)
    assert corral.run(["true"]).returncode == 0  # found through $CORRAL_SOCKET
    monkeypatch.delenv("CORRAL_SOCKET")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert corral.default_socket_path() == "/run/corral/corral.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000/")
    assert corral.default_socket_path() == "/run/user/1000/corral.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    assert corral.default_socket_path() == "/tmp/corral-1000/corral.sock"


def test_no_fd_leak_over_many_calls(sock):
    corral.run(["true"], socket=sock)
    before = fd_count()
    for _ in range(200):
        corral.run(["true"], socket=sock)
    assert fd_count() == before


def test_daemon_killed_mid_call_raises_daemon_gone(marker):
    """SIGKILL the daemon during a `run`: the caller gets DaemonGone at once, not a hang; the
    next daemon on the same state dir tears down the orphaned cell (DESIGN.md guarantee 6)."""
    d = Daemon()
    try:
        errors = []

        def call():
            try:
                corral.run([PAYLOAD, "tree", "2", "60", "+", "sleep", "60"], env=mark(marker),
                           socket=d.sock)
            except Exception as e:  # noqa: BLE001 - checked below
                errors.append(e)

        t = threading.Thread(target=call)
        t.start()
        wait_until(lambda: len(procs_with_env(marker)) == 3, what="tree up")
        d.proc.kill()
        d.proc.wait()
        t.join(timeout=10)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], corral.DaemonGone), errors
        assert d.sock in str(errors[0])
        again = Daemon(state_dir=d.state)  # the next daemon on the same state dir
        try:
            wait_until(lambda: not procs_with_env(marker), what="recovery to kill the cell")
        finally:
            again.stop()
        assert again.proc.returncode == 0, again.text()
    finally:
        d.stop()


def test_the_command_gets_this_process_umask_as_under_subprocess(sock, tmp_path):
    old = os.umask(0o037)
    try:
        r = corral.run(["sh", "-c", ": > f; umask; stat -c %a f"], cwd=tmp_path, text=True,
                       socket=sock)
    finally:
        os.umask(old)
    assert r.stdout == "0037\n640\n"
