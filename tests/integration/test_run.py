"""`corral run` end to end: the real binary, real processes, real cgroups. Exit codes follow
coreutils `timeout`; the tree is always gone when the call returns."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CORRAL, PAYLOAD, corral, ignored_signals, procs_with_env, wait_until

BACKENDS = ["cgroup1", "cgroup2", "pgroup"]


def backend_available(mode):
    r = corral("run", "--containment", mode, "--", "/bin/true")
    return r.returncode == 0


@pytest.fixture(params=BACKENDS)
def mode(request):
    if not backend_available(request.param):
        pytest.skip(f"containment {request.param} unavailable on this host")
    return request.param


def run_json(mode, *args, marker=None, **kw):
    env = ["--env", f"CORRAL_TEST_MARK={marker}"] if marker else []
    r = corral("run", "--json", "--containment", mode, *env, *args, **kw)
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_passes_through(code):
    assert corral("run", "--", PAYLOAD, "exit", str(code)).returncode == code


def test_timeout_exits_124_and_kills_escaping_tree(mode, marker):
    start = time.monotonic()
    rc, res = run_json(mode, "--timeout", "300ms", "--grace", "200ms", "--", PAYLOAD,
                       "setsid-escape", "60", "+", "fork-orphans", "5", "60", "+", "sleep", "60",
                       marker=marker)
    assert rc == 124
    assert res["state"] == "timed_out" and res["reason"] == "timeout"
    assert time.monotonic() - start < 3
    assert procs_with_env(marker) == []


def test_leftovers_killed_at_leader_exit(mode, marker):
    rc, res = run_json(mode, "--", PAYLOAD, "tree", "6", "60", "+", "exit", "5", marker=marker)
    assert rc == 5
    assert res["state"] == "exited" and res["exit_code"] == 5
    assert res["leftover"]["killed"] == 6
    assert procs_with_env(marker) == []


def test_signal_death_is_128_plus_n(mode):
    rc, res = run_json(mode, "--", PAYLOAD, "kill-self", "15")
    assert rc == 128 + 15
    assert res["state"] == "killed" and res["signal"] == "SIGTERM" and res["exit_code"] is None


def test_not_found_127_not_executable_126_bad_option_125(tmp_path):
    r = corral("run", "--", "/nonexistent/x")
    assert r.returncode == 127 and b"No such file" in r.stderr
    r = corral("run", "--", "no-such-command-corral")
    assert r.returncode == 127
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o644)
    assert corral("run", "--", str(f)).returncode == 126
    for bad in (["--timeout", "5x"], ["--memory", "lots"], ["--bogus"], ["--pids", "-1"],
                ["--pids", "99999999999999999999"], ["--pids", "2.5"], []):
        r = corral("run", *bad, "--", "/bin/true") if bad else corral("run")
        assert r.returncode == 125, bad
        assert r.stderr.startswith(b"corral run: "), r.stderr


def test_failed_to_start_json_has_error_sentence():
    r = corral("run", "--json", "--cwd", "/nonexistent/dir", "--", "/bin/true")
    res = json.loads(r.stdout)
    assert r.returncode == 125
    assert res["state"] == "failed_to_start"
    assert "chdir `/nonexistent/dir`" in res["error"]


def test_result_object_has_the_contract_fields(mode):
    rc, res = run_json(mode, "--", PAYLOAD, "echo", "hi")
    assert rc == 0
    for key in ["id", "argv", "state", "exit_code", "signal", "duration_s", "stdout", "stderr",
                "stdout_truncated", "stderr_truncated", "stdout_bytes", "stderr_bytes",
                "peak_memory_bytes", "cpu_user_s", "cpu_system_s", "pids_peak", "leftover",
                "containment", "reason", "error"]:
        assert key in res, key
    assert res["stdout"] == "hi\n" and res["containment"] == mode
    assert res["leftover"] == {"killed": 0, "stuck": 0, "stuck_processes": []}


def test_streams_output_without_json():
    r = corral("run", "--", PAYLOAD, "echo", "streamed")
    assert r.stdout == b"streamed\n"


def test_stdin_env_cwd_shell(tmp_path):
    f = tmp_path / "in"
    f.write_bytes(b"from file\n")
    assert corral("run", "--stdin", str(f), "--", PAYLOAD, "cat").stdout == b"from file\n"
    assert corral("run", "--", PAYLOAD, "cat", input=b"piped\n").stdout == b"piped\n"
    r = corral("run", "--clear-env", "--env", "A=1", "--", PAYLOAD, "print-env", "A")
    assert r.stdout == b"1\n"
    assert corral("run", "--clear-env", "--", PAYLOAD, "print-env", "HOME").stdout == b"<unset>\n"
    assert corral("run", "--cwd", str(tmp_path), "--", PAYLOAD, "print-cwd").stdout == \
        f"{tmp_path}\n".encode()
    assert corral("run", "--shell", "echo $((6*7))").stdout == b"42\n"


def test_no_inherited_fds():
    fd = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        r = subprocess.run([CORRAL, "run", "--", PAYLOAD, "list-fds"], capture_output=True,
                           close_fds=False)
    finally:
        os.close(fd)
    assert r.stdout == b"0 1 2\n"


def test_gigabyte_flood_in_constant_memory(tmp_path):
    # A fresh Python runs corral and reports the largest RSS among its waited-for descendants:
    # corral itself (the flood's writer is tiny), untouched by what other tests ran.
    script = ("import json,resource,subprocess,sys\n"
              "r=subprocess.run(sys.argv[1:],stdout=subprocess.PIPE)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
              "sys.stdout.write(r.stdout.decode())\n")
    out = subprocess.run(["/usr/bin/python3", "-c", script, CORRAL, "run", "--json",
                          "--max-output", "1M", "--", PAYLOAD, "flood-stdout", str(1 << 30)],
                         capture_output=True, timeout=120).stdout.decode()
    peak_kib, text = out.split("\n", 1)
    res = json.loads(text)
    assert res["stdout_bytes"] == 1 << 30
    assert res["stdout_truncated"] and len(res["stdout"]) == 1 << 20
    assert int(peak_kib) < 32 * 1024, f"corral peaked at {peak_kib} KiB for a 1 GiB flood"


def test_pids_and_memory_limits():
    if not backend_available("cgroup1") and not backend_available("cgroup2"):
        pytest.skip("no cgroups")
    rc, res = run_json("cgroup1", "--pids", "10", "--timeout", "10s", "--", PAYLOAD, "fork-bomb")
    assert res["pids_peak"] <= 10 and "pids" in res["limits_hit"]
    rc, res = run_json("cgroup1", "--memory", "32M", "--timeout", "20s", "--", PAYLOAD,
                       "memhog", str(256 << 20))
    assert res["reason"] == "memory_limit" and rc == 137


def test_limits_refused_clearly_without_cgroups():
    r = corral("run", "--containment", "pgroup", "--memory", "10M", "--", "/bin/true")
    assert r.returncode == 125
    assert b"--memory needs a cgroup" in r.stderr


def test_sigint_is_forwarded_to_the_tree(marker):
    p = subprocess.Popen([CORRAL, "run", "--env", f"CORRAL_TEST_MARK={marker}", "--", PAYLOAD,
                          "tree", "3", "60", "+", "sleep", "60"])
    try:
        wait_until(lambda: len(procs_with_env(marker)) >= 4, what="tree started")
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 128 + signal.SIGINT
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert procs_with_env(marker) == []


def test_run_keeps_the_dispositions_it_was_given():
    """`nohup corral run -- cmd`: cmd keeps SIGHUP ignored, as under timeout(1); only the
    daemon's cells are reset (test_daemon.py)."""
    r = subprocess.run([CORRAL, "run", "--", "cat", "/proc/self/status"], capture_output=True,
                       text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert r.returncode == 0, r.stderr
    assert ignored_signals(r.stdout) == {signal.SIGHUP}


def test_stuck_d_state_process_reported_and_call_returns(marker):
    freezer = f"/sys/fs/cgroup/freezer/corral-test-run-{os.getpid()}"
    try:
        os.mkdir(freezer)
    except OSError as e:
        pytest.skip(f"no writable v1 freezer: {e}")
    p = None
    try:
        p = subprocess.Popen([CORRAL, "run", "--timeout", "1s", "--grace", "200ms",
                              "--kill-wait", "300ms", "--env", f"CORRAL_TEST_MARK={marker}",
                              "--", PAYLOAD, "sleep", "60"], stderr=subprocess.PIPE)
        pids = wait_until(lambda: procs_with_env(marker), what="payload started")
        with open(f"{freezer}/cgroup.procs", "w") as f:
            f.write(str(pids[0]))
        with open(f"{freezer}/freezer.state", "w") as f:
            f.write("FROZEN")
        start = time.monotonic()
        _, err = p.communicate(timeout=10)
        assert time.monotonic() - start < 3
        assert p.returncode == 124
        assert b"survived SIGKILL" in err and f"pid {pids[0]}".encode() in err
        assert b"wchan" in err
    finally:
        with open(f"{freezer}/freezer.state", "w") as f:
            f.write("THAWED")
        if p and p.poll() is None:
            p.kill()
            p.wait()
        # Thawed, the SIGKILL it already has ends it; init reaps it (corral has exited).
        wait_until(lambda: not procs_with_env(marker), what="thawed process gone")
        wait_until(lambda: _rmdir(freezer), what="freezer cgroup removed")


def _rmdir(d):
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def test_help_teaches_and_doctor_reports():
    r = corral("run", "--help")
    assert r.returncode == 0 and b"Exit status" in r.stdout and b"--timeout" in r.stdout
    r = corral("doctor")
    assert r.returncode == 0 and b"corral will use" in r.stdout
    r = corral("--help")
    assert r.returncode == 0 and b"run" in r.stdout
    assert corral("no-such-subcommand").returncode == 125


def cell_cgroups(stdout):
    """The cgroup directories a cell's process was in, from its own /proc/self/cgroup: the
    per-cell "corral/run-PID-N.NS" ones of a cell with limits, "corral/pool/N" of a pooled one.
    Mapped to paths under /sys/fs/cgroup (v1 by controller name, cgroup2 as "unified")."""
    dirs = []
    for line in stdout.decode().splitlines():
        _, controllers, path = line.split(":", 2)
        if "/corral/" not in path:
            continue
        hierarchy = controllers.split(",")[0] if controllers else "unified"
        dirs.append(f"/sys/fs/cgroup/{hierarchy}{path}")
    return dirs


def test_no_cell_directories_left_behind(marker):
    """Each cell reports its own cgroups (cat /proc/self/cgroup inside it). Cells with --pids or
    --memory never use the pool: their per-cell directories must be gone when `corral run`
    returns. A pooled cell's slot may stay (kept slots are reused) but must hold none of its
    processes."""
    if not backend_available("cgroup1") and not backend_available("cgroup2"):
        pytest.skip("no writable cgroups: pgroup containment makes no directories")
    for limits in [("--pids", "64"), ("--memory", "256M"), ("--pids", "64", "--memory", "1G"),
                   ()] * 5:
        r = corral("run", "--env", f"CORRAL_TEST_MARK={marker}", *limits, "--", "cat",
                   "/proc/self/cgroup")
        assert r.returncode == 0, r.stderr
        dirs = cell_cgroups(r.stdout)
        assert dirs, f"the cell ran in no corral cgroup: {r.stdout}"
        # Checked at once: the next `corral run` sweeps what a finished owner left behind.
        if limits:
            # While it ran, the limited cell had directories of its own, named after it.
            assert all("/corral/run-" in d for d in dirs), dirs
            left = [d for d in dirs if os.path.exists(d)]
            assert left == [], f"per-cell cgroup directories left behind: {left}"
            continue
        for d in dirs:
            if "/corral/pool/" not in d:
                assert not os.path.exists(d), f"a pooled cell's own directory left behind: {d}"
            elif os.path.exists(d):
                # The slot may be another owner's by now (a daemon, another test): only processes
                # of this cell would be wrong there. Overflow slots' removal is cell_test.cc's.
                with open(f"{d}/cgroup.procs") as f:
                    ours = set(map(int, f.read().split())) & set(procs_with_env(marker))
                assert not ours, f"processes {ours} of a finished cell still in slot {d}"


def test_unprivileged_user_falls_back_to_pgroup(marker):
    import shutil
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as an unprivileged user")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", CORRAL,
                        "run", "--json", "--timeout", "300ms", "--env",
                        f"CORRAL_TEST_MARK={marker}", "--", PAYLOAD, "setsid-escape", "60", "+",
                        "sleep", "60"], capture_output=True, timeout=30)
    res = json.loads(r.stdout)
    assert r.returncode == 124, r.stderr
    assert res["containment"] == "pgroup"
    assert procs_with_env(marker) == []
