"""The durable task queue end to end: a real daemon per test (own socket and state dir), the real
CLI and JSON-RPC, real processes. Outcomes are observed (files the tasks write, /proc), never
assumed; each test ends with the daemon stopped and none of its tasks' processes alive."""

import json
import os
import shutil
import signal
import tempfile
import time

import pytest

from conftest import (PAYLOAD, Daemon, corral, proc_state, procs_with_env, wait_until,
                      zombie_children)

@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="corral-queue-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def cli(d, *args, **kw):
    return corral(*args[:1], "--socket", d.sock, *args[1:], **kw)


def submit(d, *args):
    r = cli(d, "submit", *args)
    assert r.returncode == 0, r.stderr
    tid = r.stdout.decode().strip()
    assert tid.startswith("t-")
    return tid


def task(d, tid):
    return d.call("task", {"id": tid})["result"]


def wait_task(d, tid, timeout=30):
    with d.client() as c:
        c.s.settimeout(timeout + 5)
        r = c.call("task_wait", {"id": tid, "timeout_s": timeout})
    t = r["result"]
    assert t["state"] not in ("queued", "running"), t
    return t


def mark(marker):
    return ["--env", f"CORRAL_TEST_MARK={marker}"]


def test_submit_wait_logs_tasks_end_to_end(daemon, marker):
    tid = submit(daemon, *mark(marker), "--shell", "echo out; echo err >&2; exit 3")
    r = cli(daemon, "wait", tid)
    assert r.returncode == 3, r.stderr
    t = json.loads(r.stdout)
    assert t["id"] == tid and t["state"] == "failed" and t["exit_code"] == 3
    [a] = t["attempt_list"]
    assert a["state"] == "failed" and a["exit_code"] == 3 and a["stdout_bytes"] == 4
    # The attempt's identity: the cell and its leader (pid, starttime), never a bare pid.
    assert a["cell"]["id"].startswith("d-") and a["cell"]["leader_pid"] > 0
    assert a["cell"]["leader_starttime"] > 0
    assert open(a["stdout_path"]).read() == "out\n"
    assert cli(daemon, "logs", tid).stdout == b"out\n"
    assert cli(daemon, "logs", "--stderr", "--attempt", "1", tid).stdout == b"err\n"
    ok = submit(daemon, "--", "/bin/echo", "fine")
    assert cli(daemon, "wait", ok).returncode == 0
    listed = json.loads(cli(daemon, "tasks", "--json").stdout)
    assert [x["id"] for x in listed["tasks"]] == [ok, tid]
    assert listed["counts"]["failed"] == 1 and listed["counts"]["succeeded"] == 1
    failed = json.loads(cli(daemon, "tasks", "--state", "failed", "--json").stdout)
    assert [x["id"] for x in failed["tasks"]] == [tid]
    table = cli(daemon, "tasks").stdout.decode()
    assert tid in table and "failed" in table
    m = daemon.scrape()
    assert 'corral_tasks{state="failed"} 1' in m and 'corral_tasks{state="succeeded"} 1' in m
    assert "corral_task_wait_seconds_count 2" in m and "corral_task_run_seconds_count 2" in m


def test_timeout_is_enforced_by_the_cell(daemon, marker):
    tid = submit(daemon, *mark(marker), "--timeout", "200ms", "--", PAYLOAD, "sleep", "30")
    r = cli(daemon, "wait", tid)
    assert r.returncode == 124
    t = json.loads(r.stdout)
    assert t["state"] == "timed_out" and t["attempt_list"][0]["reason"] == "timeout"
    assert procs_with_env(marker) == []


def test_idempotent_submit_with_key(daemon):
    a = daemon.call("submit", {"argv": ["true"], "key": "build-42"})["result"]
    b = daemon.call("submit", {"argv": ["true"], "key": "build-42"})["result"]
    assert a == {"id": a["id"], "existing": False} and b == {"id": a["id"], "existing": True}
    assert submit(daemon, "--key", "build-42", "--", "true") == a["id"]
    wait_task(daemon, a["id"])
    assert len(daemon.call("tasks")["result"]["tasks"]) == 1
    assert task(daemon, a["id"])["attempts"] == 1


def test_cancel_queued_and_running(daemon, marker, tmp):
    assert cli(daemon, "group", "set", "one", "--parallel", "1").returncode == 0
    ran = os.path.join(tmp, "ran")
    first = submit(daemon, "--group", "one", *mark(marker), "--", PAYLOAD, "sleep", "60")
    second = submit(daemon, "--group", "one", "--shell", f"touch {ran}")
    wait_until(lambda: task(daemon, first)["state"] == "running", what="first to run")
    assert task(daemon, second)["state"] == "queued"
    r = cli(daemon, "cancel", second)
    assert r.returncode == 0 and r.stdout.decode().split() == [second, "cancelled"]
    r = cli(daemon, "cancel", first)
    assert r.returncode == 0 and r.stdout.decode().split() == [first, "cancelled"]
    assert procs_with_env(marker) == []
    t = task(daemon, first)
    assert t["state"] == "cancelled" and t["attempt_list"][0]["state"] == "cancelled"
    assert task(daemon, second)["attempt_list"] == [] and not os.path.exists(ran)
    r = cli(daemon, "cancel", first)
    assert r.returncode == 125 and b"already finished (cancelled)" in r.stderr


def test_retry_runs_a_finished_task_again(daemon, tmp):
    counter = os.path.join(tmp, "n")
    tid = submit(daemon, "--shell", f"echo x >> {counter}; exit 1")
    assert wait_task(daemon, tid)["state"] == "failed"
    r = cli(daemon, "retry", tid)
    assert r.returncode == 0, r.stderr
    t = wait_task(daemon, tid)
    assert t["state"] == "failed" and t["attempts"] == 2 and len(t["attempt_list"]) == 2
    assert open(counter).read() == "x\nx\n"


def test_retries_with_backoff_until_success(daemon, tmp):
    counter = os.path.join(tmp, "n")
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; " \
             f"echo attempt $n; [ $n -ge 3 ]"
    tid = submit(daemon, "--retries", "5", "--backoff", "300ms", "--shell", script)
    t = wait_task(daemon, tid)
    assert t["state"] == "succeeded" and t["attempts"] == 3, t
    a = t["attempt_list"]
    assert [x["state"] for x in a] == ["failed", "failed", "succeeded"]
    # backoff 300ms, then doubled: the gaps between an end and the next start.
    assert a[1]["started"] - a[0]["ended"] >= 0.29
    assert a[2]["started"] - a[1]["ended"] >= 0.59
    assert cli(daemon, "logs", "--attempt", "2", tid).stdout == b"attempt 2\n"
    assert cli(daemon, "logs", tid).stdout == b"attempt 3\n"


def test_group_limit_is_never_exceeded(daemon, tmp):
    assert daemon.call("group_set", {"group": "g", "parallel": 2})["result"]["parallel"] == 2
    log = os.path.join(tmp, "log")
    script = f"echo s $(date +%s%N) >> {log}; sleep 0.15; echo e $(date +%s%N) >> {log}"
    ids = [daemon.call("submit", {"shell": script, "group": "g"})["result"]["id"]
           for _ in range(10)]
    # Another group alongside is not held back by g's limit.
    other = daemon.call("submit", {"shell": "sleep 0.1", "group": "h"})["result"]["id"]
    for tid in ids + [other]:
        assert wait_task(daemon, tid)["state"] == "succeeded"
    events = sorted((int(ts), kind) for kind, ts in (l.split() for l in open(log)))
    live = peak = 0
    for _, kind in events:  # 'e' sorts before 's' at equal times: never over-counts
        live += 1 if kind == "s" else -1
        peak = max(peak, live)
    assert len(events) == 20 and peak == 2


def peak_running(log):
    events = sorted((int(ts), kind) for kind, ts in (l.split() for l in open(log)))
    live = peak = 0
    for _, kind in events:  # 'e' sorts before 's' at equal times: never over-counts
        live += 1 if kind == "s" else -1
        peak = max(peak, live)
    return len(events), peak


def test_queue_parallel_caps_all_groups_together(tmp):
    d = Daemon(extra=["--queue-parallel", "3"])
    try:
        log = os.path.join(tmp, "log")
        script = f"echo s $(date +%s%N) >> {log}; sleep 0.2; echo e $(date +%s%N) >> {log}"
        ids = [d.call("submit", {"shell": script, "group": f"g{i % 4}"})["result"]["id"]
               for i in range(12)]
        # A plain `run` is not a queued task: the cap leaves it alone.
        assert d.call("run", {"argv": ["/bin/true"]})["result"]["exit_code"] == 0
        for tid in ids:
            assert wait_task(d, tid)["state"] == "succeeded"
        assert peak_running(log) == (24, 3)
    finally:
        d.stop()
    assert d.proc.returncode == 0, d.text()
    bad = corral("daemon", "--queue-parallel", "-1")
    assert bad.returncode == 125 and b"--queue-parallel: '-1' is not a number" in bad.stderr


def test_priority_then_fifo(daemon, tmp):
    daemon.call("group_set", {"group": "p", "parallel": 1})
    log = os.path.join(tmp, "log")
    gate = os.path.join(tmp, "gate")
    blocker = daemon.call("submit", {"shell": f"while [ ! -e {gate} ]; do sleep 0.02; done",
                                     "group": "p"})["result"]["id"]
    wait_until(lambda: task(daemon, blocker)["state"] == "running", what="blocker to run")
    names = [("low1", 0), ("high", 5), ("low2", 0), ("mid", 1)]
    ids = [daemon.call("submit", {"shell": f"echo {n} >> {log}", "group": "p",
                                  "priority": p})["result"]["id"] for n, p in names]
    open(gate, "w").close()
    for tid in ids:
        wait_task(daemon, tid)
    assert open(log).read().split() == ["high", "mid", "low1", "low2"]


def test_worker_killed_from_outside_is_crashed_and_retried(daemon, marker, tmp):
    flag = os.path.join(tmp, "flag")
    script = f"if [ -e {flag} ]; then echo second; exit 0; fi; touch {flag}; sleep 60; true"
    tid = submit(daemon, "--retries", "1", "--backoff", "0", *mark(marker), "--shell", script)
    wait_until(lambda: os.path.exists(flag), what="first attempt to start")
    a = wait_until(lambda: task(daemon, tid)["attempt_list"][0]["cell"]["leader_pid"],
                   what="leader pid recorded")
    os.kill(a, signal.SIGKILL)
    t = wait_task(daemon, tid)
    assert t["state"] == "succeeded" and t["attempts"] == 2
    first = t["attempt_list"][0]
    assert first["state"] == "crashed" and first["signal"] == "SIGKILL"
    assert cli(daemon, "logs", tid).stdout == b"second\n"
    assert procs_with_env(marker) == []


def test_daemon_sigkill_mid_run_loses_nothing(marker, tmp):
    state = os.path.join(tmp, "state")
    flag = os.path.join(tmp, "flag")
    d1 = Daemon(state_dir=state)
    try:
        d1.call("group_set", {"group": "k", "parallel": 1})
        script = f"if [ -e {flag} ]; then echo again; exit 0; fi; touch {flag}; sleep 60; true"
        running = d1.call("submit", {"shell": script, "retries": 1, "backoff_s": 0, "group": "k",
                                     "env": {"CORRAL_TEST_MARK": marker}})["result"]["id"]
        queued = d1.call("submit", {"argv": ["/bin/echo", "queued"], "group": "k",
                                    "env": {"CORRAL_TEST_MARK": marker}})["result"]["id"]
        wait_until(lambda: os.path.exists(flag), what="first attempt to start")
        leader = wait_until(
            lambda: task(d1, running)["attempt_list"][0]["cell"]["leader_pid"], what="leader")
        assert task(d1, queued)["state"] == "queued"
        d1.proc.send_signal(signal.SIGKILL)
        d1.proc.wait()
    finally:
        d1.stop()
    d2 = Daemon(state_dir=state)
    try:
        assert "1 task attempts of a previous daemon marked crashed" in \
            wait_until(lambda: "crashed" in d2.text() and d2.text(), what="recovery message")
        # Nothing left running with no process behind it, and the old leader is gone.
        t = wait_task(d2, running)
        assert t["state"] == "succeeded" and t["attempts"] == 2
        first = t["attempt_list"][0]
        assert first["state"] == "crashed" and first["reason"] == "daemon_died"
        assert t["attempt_list"][1]["cell"]["daemon_pid"] == d2.proc.pid
        assert wait_task(d2, queued)["state"] == "succeeded"
        assert cli(d2, "logs", queued).stdout == b"queued\n"
        assert proc_state(leader) != "S"  # gone (None), or a zombie of nobody's
        counts = d2.call("tasks")["result"]["counts"]
        assert counts["running"] == 0 and counts["queued"] == 0 and counts["succeeded"] == 2
        wait_until(lambda: procs_with_env(marker) == [], what="no process left")
    finally:
        d2.stop()
    assert d2.proc.returncode == 0


def test_a_second_daemon_cannot_share_the_queue(tmp):
    state = os.path.join(tmp, "state")
    d1 = Daemon(state_dir=state)
    try:
        other = os.path.join(tmp, "s2")
        r = corral("daemon", "--socket", other, "--state-dir", state, "--metrics", "off",
                   "--scan-interval", "0", timeout=20)
        assert r.returncode == 125 and b"another corral daemon already uses the state dir" in r.stderr
    finally:
        d1.stop()


N_MANY = int(os.environ.get("CORRAL_QUEUE_MANY", "2000"))


def test_many_short_tasks_leave_no_zombie_and_right_counts(daemon):
    with daemon.client() as c:
        start = time.monotonic()
        batch = 500  # pipelined: requests in flight, answers matched by count
        for off in range(0, N_MANY, batch):
            n = min(batch, N_MANY - off)
            msgs = "".join(json.dumps({"jsonrpc": "2.0", "id": off + i, "method": "submit",
                                       "params": {"argv": ["/bin/true"]}}) + "\n"
                           for i in range(n))
            c.send_raw(msgs.encode())
            for _ in range(n):
                assert "result" in c.read()

        def done():
            counts = c.call("tasks", {"limit": 1})["result"]["counts"]
            return counts["succeeded"] == N_MANY and counts
        counts = wait_until(done, timeout=max(60, N_MANY / 20), interval=0.2,
                            what=f"{N_MANY} tasks to succeed")
        elapsed = time.monotonic() - start
    print(f"{N_MANY} tasks in {elapsed:.1f}s ({N_MANY / elapsed:.0f}/s)")
    assert counts["queued"] == counts["running"] == counts["failed"] == counts["crashed"] == 0
    assert zombie_children(daemon.proc.pid) == []
    assert f'corral_tasks{{state="succeeded"}} {N_MANY}' in daemon.scrape()
    # The WAL is checkpointed into the database as it goes (about 23 KiB a task went to the WAL,
    # never to be reused, when a statement left mid-row kept SQLite's checkpoints from running).
    wal = os.path.getsize(os.path.join(daemon.state, "tasks.db-wal"))
    assert wal < 16 << 20, f"tasks.db-wal is {wal} bytes after {N_MANY} tasks"
    assert os.path.getsize(os.path.join(daemon.state, "tasks.db")) > 64 << 10


def test_bad_input_gets_clear_errors(daemon):
    r = cli(daemon, "wait", "t-999")
    assert r.returncode == 125 and b"no task 't-999'" in r.stderr
    r = cli(daemon, "logs", "t-999")
    assert r.returncode == 125 and b"no task 't-999'" in r.stderr
    r = cli(daemon, "logs", "--attempt", "first", "t-1")
    assert r.returncode == 125 and b"'first' is not an attempt number" in r.stderr
    r = cli(daemon, "cancel", "t-x")
    assert r.returncode == 125 and b"no task 't-x'" in r.stderr
    r = cli(daemon, "submit", "--group", "a b", "--", "true")
    assert r.returncode == 125 and b"'a b' is not a group name" in r.stderr
    r = cli(daemon, "submit", "--backoff", "5x", "--", "true")
    assert r.returncode == 125 and b"--backoff: '5x' is not a duration" in r.stderr
    r = cli(daemon, "submit", "--timeout", "soon", "--", "true")
    assert r.returncode == 125 and b"--timeout: 'soon' is not a duration" in r.stderr
    r = cli(daemon, "submit", "--retries", "-1", "--", "true")
    assert r.returncode == 125 and b"--retries" in r.stderr
    r = cli(daemon, "group", "set", "g", "--parallel", "many")
    assert r.returncode == 125 and b"'many' is not a number" in r.stderr
    e = daemon.call("submit", {"argv": ["true"], "backoff_s": -1})["error"]
    assert e["code"] == -32602 and "backoff_s" in e["message"]
    e = daemon.call("submit", {"argv": ["true"], "retries": "3"})["error"]
    assert e["code"] == -32602 and "retries" in e["message"]
    e = daemon.call("submit", {"argv": ["true"], "frob": 1})["error"]
    assert e["code"] == -32602 and "frob" in e["message"]
    e = daemon.call("tasks", {"state": "done"})["error"]
    assert e["code"] == -32602 and "'done' is not a task state" in e["message"]
    tid = submit(daemon, "--", "true")
    wait_task(daemon, tid)
    e = daemon.call("task_output", {"id": tid, "attempt": 9})["error"]
    assert "has no attempt 9" in e["message"]
    blocker = submit(daemon, "--", PAYLOAD, "sleep", "30")
    e = daemon.call("retry", {"id": blocker})["error"]
    assert "has not finished" in e["message"]
    assert daemon.call("cancel", {"id": blocker})["result"]["state"] == "cancelled"


def test_retain_removes_finished_tasks_and_their_output_files():
    d = Daemon(extra=["--retain", "2s"])
    try:
        done = d.call("submit", {"shell": "echo kept-for-2s; echo err >&2"})["result"]["id"]
        assert wait_task(d, done)["state"] == "succeeded"
        out = d.call("task_output", {"id": done})["result"]
        assert out["data"] == "kept-for-2s\n"
        files = [os.path.join(d.state, "tasks", f) for f in os.listdir(os.path.join(d.state, "tasks"))
                 if f.startswith(done + ".")]
        assert len(files) == 2, files  # stdout and stderr, the only streams with bytes
        # A task still running when the others expire is not touched.
        live = d.call("submit", {"argv": ["/bin/sleep", "30"]})["result"]["id"]
        wait_until(lambda: task(d, live)["state"] == "running", what="long task running")
        gone = wait_until(lambda: "error" in d.call("task", {"id": done}), timeout=15,
                          what="finished task removed after --retain")
        assert gone
        assert not any(os.path.exists(f) for f in files)
        counts = d.call("tasks", {})["result"]["counts"]
        assert counts["succeeded"] == 0 and counts["running"] == 1
        assert task(d, live)["state"] == "running"
        assert d.call("cancel", {"id": live})["result"]["state"] == "cancelled"
    finally:
        d.stop()
    assert d.proc.returncode == 0, d.text()
    bad = corral("daemon", "--retain", "soon")
    assert bad.returncode == 125 and b"--retain: 'soon' is not a duration" in bad.stderr
