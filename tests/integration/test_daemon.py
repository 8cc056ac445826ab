"""`corral daemon` end to end: a real daemon per test (own socket, state dir, metrics port),
real clients over the Unix socket, real processes. Each test ends with the daemon stopped by
SIGTERM (exit 0, socket removed) and nothing of its cells alive."""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (CORRAL, PAYLOAD, Daemon, corral, ignored_signals, links, parent_of,
                      procs_with_env, prometheus_query_until, wait_until, zombie_children)


def mark(marker):
    return {"CORRAL_TEST_MARK": marker}


def test_run_returns_result_and_kills_leftovers(daemon, marker):
    r = daemon.call("run", {"argv": [PAYLOAD, "setsid-escape", "60", "+", "echo", "hi"],
                            "env": mark(marker)})["result"]
    assert r["state"] == "exited" and r["exit_code"] == 0 and r["stdout"] == "hi\n"
    assert r["leftover"]["killed"] == 1
    assert procs_with_env(marker) == []


def test_start_output_wait_list_kill_stats(daemon, marker):
    with daemon.client() as c:
        cid = c.call("start", {"shell": "echo one; sleep 0.3; echo two",
                               "env": mark(marker)})["result"]["id"]
        assert c.call("wait", {"id": cid, "timeout_s": 0.05})["result"] == \
            {"id": cid, "state": "running"}
        assert [x["id"] for x in c.call("list")["result"]["cells"]] == [cid]
        res = c.call("wait", {"id": cid})["result"]
        assert res["stdout"] == "one\ntwo\n"
        out = c.call("output", {"id": cid, "offset": 4})["result"]
        assert out["data"] == "two\n" and out["next_offset"] == 8 and out["done"]
        long = c.call("start", {"argv": [PAYLOAD, "tree", "3", "60", "+", "sleep", "60"],
                                "env": mark(marker)})["result"]["id"]
        wait_until(lambda: len(procs_with_env(marker)) == 4, what="tree up")
        assert c.call("kill", {"id": long})["result"]["ok"]
        res = c.call("wait", {"id": long})["result"]
        assert res["state"] == "cancelled" and res["reason"] == "cancelled"
        stats = c.call("stats")["result"]
        assert stats["finished"] == {"exited": 1, "cancelled": 1} and stats["running"] == 0
    assert procs_with_env(marker) == []


def test_timeout_and_limits_through_the_daemon(daemon):
    r = daemon.call("run", {"argv": [PAYLOAD, "ignore-sigterm", "60"], "timeout_s": 0.2,
                            "grace_s": 0.2})["result"]
    assert r["state"] == "timed_out" and r["signal"] == "SIGKILL"
    r = daemon.call("run", {"argv": [PAYLOAD, "fork-bomb"], "limits": {"pids": 10},
                            "timeout_s": 10})["result"]
    assert r["pids_peak"] <= 10 and "pids" in r["limits_hit"]


def test_bad_input_never_hurts(daemon):
    with daemon.client() as c:
        c.send_raw(b"\x00\xff garbage\n")
        assert c.read()["error"]["code"] == -32700
        c.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": "run", "params": {\n')
        assert c.read()["error"]["code"] == -32700
        assert c.call("nope")["error"]["code"] == -32601
        assert c.call("run", {"argv": "not a list"})["error"]["code"] == -32602
        assert c.call("run", {"argv": ["x"], "timeout_s": "soon"})["error"]["code"] == -32602
        assert c.call("run", {"argv": ["x"], "bogus": 1})["error"]["code"] == -32602
        assert c.call("wait", {"id": "d-0-0"})["error"]["code"] == -32602
        c.send_raw(b"[1, 2]\n")
        assert c.read()["error"]["code"] == -32600
        c.send_raw(b'{"id": 9, "method": 3}\n')
        assert c.read()["error"]["code"] == -32600
        c.send_raw(b"x" * (5 << 20) + b"\n")  # over the 4 MiB line limit
        assert c.read()["error"]["code"] == -32600
        assert c.call("run", {"argv": ["/bin/echo", "still fine"]})["result"]["stdout"] == \
            "still fine\n"
    # A client that sends and vanishes; one that never reads its answers.
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"run","params":{"argv":["/bin/true"]}}\n')
    s.close()
    lazy = socket.socket(socket.AF_UNIX)
    lazy.connect(daemon.sock)
    lazy.setblocking(False)
    req = b'{"jsonrpc":"2.0","id":1,"method":"stats"}\n' * 2000
    try:
        lazy.sendall(req)
    except BlockingIOError:
        pass
    start = time.monotonic()
    assert daemon.call("run", {"argv": ["/bin/true"]})["result"]["exit_code"] == 0
    assert time.monotonic() - start < 2
    lazy.close()
    assert daemon.proc.poll() is None


def test_disconnect_during_run_cancels_the_cell(daemon, marker):
    c = daemon.client()
    c.send_raw((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {
        "argv": [PAYLOAD, "tree", "4", "60", "+", "sleep", "60"],
        "env": mark(marker)}}) + "\n").encode())
    wait_until(lambda: len(procs_with_env(marker)) == 5, what="tree up")
    c.close()
    wait_until(lambda: not procs_with_env(marker), timeout=5, what="cell cancelled")
    stats = daemon.call("stats")["result"]
    assert stats["finished"].get("cancelled") == 1


def test_isolated_runs_each_get_fresh_namespaces(daemon):
    """The daemon enters namespaces made ahead (cell/ns_pool.h): each isolated run must still
    get network (lo up), IPC and UTS namespaces of its own, and the daemon stays in the host's."""
    host_ns = [os.readlink(f"/proc/self/ns/{n}") for n in ("net", "ipc", "uts")]
    probe = ("echo $(readlink /proc/self/ns/net /proc/self/ns/ipc /proc/self/ns/uts); "
             "grep -c ': ' /proc/net/dev; "  # interfaces: lo only
             "(exec 3<>/dev/tcp/127.0.0.1/1) 2>&1 | grep -o 'Connection refused'; "  # lo is up
             "echo probed")
    # Alive at once, so that no namespace (nor its inode number) can have been reused.
    ids = [daemon.call("start", {"argv": ["bash", "-c", probe + "; exec sleep 60"],
                                 "isolate": True, "cwd": "/var/tmp"})["result"]["id"]
           for _ in range(8)]

    def first_lines(cid):
        out = daemon.call("output", {"id": cid})["result"]["data"]
        return out.split("\n") if "probed" in out else None
    seen = []
    for cid in ids:
        ns, ifaces, refused, *_ = wait_until(lambda: first_lines(cid), what="isolated cell up")
        assert (ifaces, refused) == ("1", "Connection refused")  # not "Network is unreachable"
        seen.extend(ns.split())
    for cid in ids:  # all at once: each leader is a PID 1 that ignores SIGTERM (grace, then KILL)
        daemon.call("kill", {"id": cid})
    for cid in ids:
        assert daemon.call("wait", {"id": cid})["result"]["state"] == "cancelled"
    assert len(seen) == 3 * 8 and len(set(seen)) == len(seen), seen
    assert not set(host_ns) & set(seen)
    # The helper thread went home: every thread of the daemon is in the host's namespaces, and
    # a plain run still has the host's network.
    tasks = f"/proc/{daemon.proc.pid}/task"
    for t in os.listdir(tasks):
        ns = links(f"{tasks}/{t}/ns")
        if ns:  # empty: the thread ended since the listing
            assert [ns[n] for n in ("net", "ipc", "uts")] == host_ns
    r = daemon.call("run", {"shell": "echo $(readlink /proc/self/ns/net /proc/self/ns/ipc "
                                     "/proc/self/ns/uts)"})["result"]
    assert r["stdout"].split() == host_ns
    # Namespaces kept ready are few and bounded: 4 sets ready, and the helper's way home.
    held = [fd for fd, target in links(f"/proc/{daemon.proc.pid}/fd").items()
            if target.split(":")[0] in ("net", "ipc", "uts")]
    assert len(held) <= 3 * 5


def test_cells_start_with_default_signals_however_the_daemon_was_started():
    """A daemon started from a script's `&` (SIGINT, SIGQUIT ignored) or under nohup (SIGHUP):
    its cells must still get the default dispositions, or a Python cell never sees Ctrl-C."""
    shell_and_nohup = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
    d = Daemon(preexec_fn=lambda: [signal.signal(s, signal.SIG_IGN) for s in shell_and_nohup])
    try:
        daemon_status = Path(f"/proc/{d.proc.pid}/status").read_text()
        assert set(shell_and_nohup) <= ignored_signals(daemon_status)
        # The isolated cell's cwd: its /tmp is its own, where a checkout under /tmp is not.
        for cell in ({"argv": ["cat", "/proc/self/status"]},
                     {"argv": ["cat", "/proc/self/status"], "isolate": True, "cwd": "/var/tmp"}):
            r = d.call("run", cell)["result"]
            assert r["exit_code"] == 0, r
            assert ignored_signals(r["stdout"]) == set()
        # A forwarded SIGINT now ends a cell whose command did nothing about it.
        cid = d.call("start", {"argv": ["sleep", "60"], "timeout_s": 20})["result"]["id"]
        assert "error" not in d.call("kill", {"id": cid, "signal": "SIGINT"})
        r = d.call("wait", {"id": cid})["result"]
        assert (r["state"], r["signal"]) == ("killed", "SIGINT"), r
    finally:
        d.stop()


def test_cells_get_the_fd_limit_the_daemon_was_started_with():
    """The daemon raises its own RLIMIT_NOFILE (it holds fds for thousands of cells); its cells get
    the soft limit it was started with back, not one that makes close-all-fds loops and select()
    users suffer. The hard limit stays raised, for a command that asks for more."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"hard RLIMIT_NOFILE {hard}: nothing to raise")
    d = Daemon(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard)))
    try:
        limits = Path(f"/proc/{d.proc.pid}/limits").read_text()
        daemon_soft, daemon_hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
        assert int(daemon_soft) >= hard and daemon_soft == daemon_hard
        r = d.call("run", {"shell": "ulimit -Sn; ulimit -Hn"})["result"]
        assert r["stdout"].split() == ["512", daemon_hard], r
    finally:
        d.stop()


def test_cli_commands_run_as_corral_run_would_run_them_here(tmp_path):
    """`corral exec`/`submit` are `corral run` with the daemon as parent: the command gets the
    caller's working directory, environment and umask, not the daemon's (a caller at 077 must not
    get world-readable files). The raw protocol takes `umask`; without it, the daemon's."""
    d = Daemon(preexec_fn=lambda: os.umask(0))
    try:
        show = {"shell": "umask"}
        assert d.call("run", show)["result"]["stdout"] == "0000\n"  # nothing sent: the daemon's
        assert d.call("run", dict(show, umask=0o077))["result"]["stdout"] == "0077\n"
        for bad in (0o1000, -1, "022", 2.5):
            e = d.call("run", dict(show, umask=bad))["error"]
            assert e["code"] == -32602 and "umask" in e["message"], (bad, e)
        env = dict(os.environ, CORRAL_SOCKET=d.sock, CORRAL_TEST_VAR="from the caller")
        here = dict(env=env, cwd=tmp_path, capture_output=True, timeout=30,
                    preexec_fn=lambda: os.umask(0o027))
        probe = 'umask; : > f; stat -c %a f; pwd; echo "$CORRAL_TEST_VAR"'
        want = f"0027\n640\n{tmp_path}\nfrom the caller\n".encode()
        r = subprocess.run([CORRAL, "exec", "--", "sh", "-c", probe], **here)
        assert r.stdout == want, r
        os.unlink(tmp_path / "f")
        tid = subprocess.run([CORRAL, "submit", "--shell", probe], **here).stdout.decode().strip()
        assert subprocess.run([CORRAL, "wait", tid], env=env, timeout=30).returncode == 0
        r = subprocess.run([CORRAL, "logs", tid], env=env, capture_output=True, timeout=30)
        assert r.stdout == want, r
        # A relative --cwd is the caller's too; --clear-env leaves only what --env gives.
        (tmp_path / "sub").mkdir()
        r = subprocess.run([CORRAL, "exec", "--cwd", "sub", "--clear-env", "--env", "A=1", "--",
                            "/usr/bin/env"], **here)
        assert r.returncode == 0, r
        env_seen = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
        assert env_seen.keys() == {"A", "CORRAL_CELL"} and env_seen["A"] == "1", env_seen
    finally:
        d.stop()


def test_a_running_cell_costs_the_daemon_few_fds(daemon, marker):
    """Past the pool of reusable cgroups each cell has directories of its own: it keeps their
    cgroup.events open, not a dozen counter files, so the fd limit bounds cells late."""
    fd_dir = f"/proc/{daemon.proc.pid}/fd"
    before = len(os.listdir(fd_dir))
    start = lambda c: c.call("start", {"argv": [PAYLOAD, "sleep", "60"], "env": mark(marker)}
                             )["result"]["id"]
    with daemon.client() as c:
        ids = [start(c) for _ in range(20)]  # more than the 16 pool slots
        try:
            mid = len(os.listdir(fd_dir))
            ids += [start(c) for _ in range(40)]
            per_cell = (len(os.listdir(fd_dir)) - mid) / 40
        finally:
            for cid in ids:
                c.call("kill", {"id": cid})
            results = [c.call("wait", {"id": cid})["result"] for cid in ids]
    # pidfd, stdout and stderr pipes, cgroup2 directory and its cgroup.events (5): 13 a cell
    # without this. The pool slots keep their counter files open (about 11 each, once).
    assert per_cell <= 6.5, per_cell
    assert mid - before <= 16 * 15 + 4 * 6, mid - before  # a pooled cell: about 14
    assert all(r["state"] == "cancelled" and r["pids_peak"] == 1 for r in results), results[0]
    assert procs_with_env(marker) == []


def test_200_concurrent_clients_leave_no_zombie(daemon, marker):
    results, errors = [], []

    def one(i):
        try:
            with daemon.client() as c:
                r = c.call("run", {"shell": f"{PAYLOAD} fork-orphans 2 30 & echo {i}",
                                   "env": mark(marker)})
                results.append(r["result"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(results) == 200 and all(r["state"] == "exited" for r in results)
    assert sorted(int(r["stdout"]) for r in results) == list(range(200))
    assert procs_with_env(marker) == []
    assert zombie_children(daemon.proc.pid) == []
    wait_until(lambda: "corral_unreaped_children 0" in daemon.scrape(), what="scan refresh")
    text = daemon.scrape()
    assert re.search(r'corral_cells_total\{state="exited"\} 200', text), text


def test_commands_run_as_the_caller_and_others_cannot_see_them(marker):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    d = Daemon(extra=["--socket-group", "nogroup"])
    try:
        client = ("import json,socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f=s.makefile('rwb')\n"
                  "for line in sys.argv[2:]:\n"
                  "    f.write(line.encode()+b'\\n'); f.flush(); print(f.readline().decode().strip())\n")
        def as_nobody(*msgs):
            out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                  "/usr/bin/python3", "-c", client, d.sock, *msgs],
                                 capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
            return [json.loads(l) for l in out.stdout.decode().splitlines()]
        ids = as_nobody(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run",
                                    "params": {"argv": [PAYLOAD, "print-ids"]}}))
        uid, gid = ids[0]["result"]["stdout"].split()[:2]
        assert (int(uid), int(gid)) == (65534, 65534)
        iso = as_nobody(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {
            "shell": "id -u; touch /etc/corral-probe 2>&1; grep CapEff /proc/self/status",
            "isolate": "workspace", "cwd": "/tmp"}}))[0]["result"]
        assert iso["stdout"].startswith("65534\n") and "Read-only file system" in iso["stdout"]
        assert "CapEff:\t0000000000000000" in iso["stdout"]
        assert not os.path.exists("/etc/corral-probe")
        root_try = as_nobody(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run",
                                         "params": {"argv": ["/bin/true"], "user": "root"}}))
        assert root_try[0]["error"]["code"] == -32003
        # A working directory the caller could not reach itself is refused, not entered as root
        # (from inside it, a 0644 file under a 0700 directory would be readable).
        private = tempfile.mkdtemp(prefix="corral-private-", dir="/var/tmp")  # 0700, root's
        try:
            os.mkdir(f"{private}/open", 0o755)
            Path(f"{private}/open/secret").write_text("root's\n")
            os.chmod(f"{private}/open/secret", 0o644)
            r = as_nobody(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "run", "params": {
                "argv": ["cat", "secret"], "cwd": f"{private}/open"}}))[0]["result"]
            assert r["state"] == "failed_to_start" and r["stdout"] == "", r
            assert "chdir" in r["error"] and "Permission denied" in r["error"], r
        finally:
            shutil.rmtree(private)
        mine = d.call("start", {"argv": [PAYLOAD, "sleep", "60"], "env": mark(marker)})
        cid = mine["result"]["id"]
        seen = as_nobody(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "list"}),
                         json.dumps({"jsonrpc": "2.0", "id": 2, "method": "kill",
                                     "params": {"id": cid}}))
        assert cid not in [c["id"] for c in seen[0]["result"]["cells"]]
        assert "error" in seen[1]
        states = {c["id"]: c["state"] for c in d.call("list")["result"]["cells"]}
        assert states[cid] == "running"
    finally:
        d.stop()


@pytest.mark.parametrize("mode", ["cgroup1", "pgroup"])
def test_daemon_sigkill_then_restart_tears_down_old_cells(marker, mode):
    state = tempfile.mkdtemp(prefix="corral-state-")
    d = Daemon(state_dir=state, extra=["--containment", mode])
    try:
        for _ in range(5):
            d.call("start", {"argv": [PAYLOAD, "setsid-escape", "60", "+", "sleep", "60"],
                             "env": mark(marker)})
        def settled():
            # 5 leaders and their 5 setsid'd grandchildren, and no middle child still between
            # them (ten processes can also be a cell at 3 while another has not forked yet).
            pids = procs_with_env(marker)
            return len(pids) == 10 and not any(parent_of(p) in pids for p in pids)
        wait_until(settled, what="cells up")
        d.proc.kill()
        d.proc.wait()
        assert len(procs_with_env(marker)) == 10  # orphaned, still running
        d2 = Daemon(state_dir=state, extra=["--containment", mode])
        try:
            wait_until(lambda: not procs_with_env(marker), timeout=5, what="old cells gone")
            assert d2.call("stats")["result"]["recovered_killed"] >= (10 if mode == "pgroup" else 0)
        finally:
            d2.stop()
    finally:
        for pid in procs_with_env(marker):
            os.kill(pid, signal.SIGKILL)
        d.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_sigterm_cancels_cells_and_exits_zero(marker):
    d = Daemon()
    d.call("start", {"argv": [PAYLOAD, "sleep", "60"], "env": mark(marker)})
    wait_until(lambda: procs_with_env(marker), what="cell up")
    d.stop()
    assert d.proc.returncode == 0
    assert procs_with_env(marker) == []
    assert not os.path.exists(d.sock)


def test_overload_is_refused_with_32001():
    d = Daemon(extra=["--max-running", "1", "--max-queued", "1"])
    try:
        with d.client() as a, d.client() as b:
            ida = a.call("start", {"argv": [PAYLOAD, "sleep", "60"]})["result"]["id"]
            idb = a.call("start", {"argv": [PAYLOAD, "sleep", "60"]})["result"]["id"]
            assert a.call("list")["result"]["cells"][1]["state"] == "queued"
            assert b.call("start", {"argv": ["/bin/true"]})["error"]["code"] == -32001
            a.call("kill", {"id": idb})
            a.call("kill", {"id": ida})
    finally:
        d.stop()


def test_cli_clients(daemon, marker, tmp_path):
    env = {"CORRAL_SOCKET": daemon.sock}
    r = corral("exec", "--", PAYLOAD, "exit", "3", env=env)
    assert r.returncode == 3
    r = corral("exec", "--timeout", "200ms", "--", PAYLOAD, "sleep", "30", env=env)
    assert r.returncode == 124
    r = corral("exec", "--shell", "echo out; echo err >&2", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\n", b"err\n")
    r = corral("exec", "--json", "--", PAYLOAD, "echo", "j", env=env)
    assert json.loads(r.stdout)["stdout"] == "j\n"
    cid = corral("start", "--env", f"CORRAL_TEST_MARK={marker}", "--", PAYLOAD, "sleep", "60",
                 env=env).stdout.decode().strip()
    assert cid.startswith("d-")
    assert cid.encode() in corral("ps", env=env).stdout
    assert corral("kill", cid, env=env).returncode == 0
    assert corral("wait", cid, env=env).returncode == 128 + 15
    cid = corral("start", "--shell", "echo logged", env=env).stdout.decode().strip()
    corral("wait", cid, env=env)
    assert corral("logs", cid, env=env).stdout == b"logged\n"
    r = corral("exec", "--", "/bin/true", env={"CORRAL_SOCKET": str(tmp_path / "none.sock")})
    assert r.returncode == 125 and b"is `corral daemon` running?" in r.stderr


def test_metrics_pass_promtool_and_a_real_prometheus_scrapes_them(daemon):
    daemon.call("run", {"argv": ["/bin/true"]})
    text = daemon.scrape()
    for name in ["corral_cells_running", "corral_cells_total", "corral_cell_duration_seconds",
                 "corral_spawn_seconds", "corral_reaped_total", "corral_unreaped_children",
                 "corral_stuck_processes", "corral_leftover_killed_total", "corral_queue_depth",
                 "corral_open_fds", "corral_host_zombies", "corral_host_pid_max"]:
        assert name in text, name
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True)
        assert p.returncode == 0, p.stdout + p.stderr
    res = prometheus_query_until(daemon.metrics, 'corral_cells_total{state="exited"}',
                                 lambda res: res[0]["value"][1] == "1")
    assert res[0]["metric"]["state"] == "exited"


def test_admission_control_refuses_near_fd_limit():
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) missing")
    d = Daemon(extra=["--scan-interval", "0", "--max-running", "500"],
               prefix=["prlimit", "--nofile=160:160"])
    try:
        with d.client() as c:
            refused = None
            for _ in range(40):
                r = c.call("start", {"argv": [PAYLOAD, "sleep", "60"]})
                if "error" in r:
                    refused = r["error"]
                    break
            assert refused and refused["code"] == -32001 and "fd limit" in refused["message"]
            assert c.call("stats")["result"]["running"] >= 5
    finally:
        d.stop()


def test_admission_control_refuses_near_cell_root_pids_limit():
    root = "/sys/fs/cgroup/pids/corral"
    if not os.path.exists(os.path.join(root, "pids.max")):
        pytest.skip("no v1 pids cell root on this host")
    d = Daemon(extra=["--containment", "cgroup1"])
    try:
        for _ in range(3):
            d.call("start", {"argv": [PAYLOAD, "sleep", "60"]})
        current = int(Path(root, "pids.current").read_text())
        Path(root, "pids.max").write_text(str(current))
        r = d.call("run", {"argv": ["/bin/true"]})
        assert r["error"]["code"] == -32001 and "pids limit" in r["error"]["message"]
    finally:
        Path(root, "pids.max").write_text("max")
        d.stop()
    assert d.proc.returncode == 0


def test_stdin_file_reaches_the_command_from_exec_start_and_submit(daemon, tmp_path):
    """The three daemon clients read --stdin FILE the same way (`start` once sent nothing)."""
    src = tmp_path / "in"
    src.write_bytes(b"line one\nline two\n")
    env = dict(os.environ, CORRAL_SOCKET=daemon.sock)
    run = lambda *a: subprocess.run([CORRAL, *a], env=env, capture_output=True, timeout=30)
    r = run("exec", "--stdin", str(src), "--", "cat")
    assert r.returncode == 0 and r.stdout == src.read_bytes(), r
    for verb in ("start", "submit"):
        r = run(verb, "--stdin", str(src), "--", "cat")
        assert r.returncode == 0, r
        ident = r.stdout.decode().strip()
        assert run("wait", ident).returncode == 0
        r = run("logs", ident)
        assert r.stdout == src.read_bytes(), (verb, r)
    r = run("start", "--stdin", str(tmp_path / "missing"), "--", "cat")
    assert r.returncode == 125 and b"--stdin" in r.stderr, r
