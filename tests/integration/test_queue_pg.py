"""The task queue on PostgreSQL (`corral daemon --queue postgres://...`): a private PostgreSQL on
loopback (initdb in a temp dir, run as the `postgres` OS user, stopped and removed at the end),
several real daemons (own sockets, own state dirs) sharing one database. Outcomes are observed:
each task appends its id to a file, the database's attempt rows say which daemon ran what."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psutil
import pytest

from conftest import CORRAL, Daemon, corral, wait_until

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
N_TASKS = int(os.environ.get("CORRAL_QUEUE_PG_TASKS", "2000"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self):
        self.bin = PG_BIN[-1]
        self.dir = tempfile.mkdtemp(prefix="corral-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data, 0o700)
        if os.geteuid() == 0:  # initdb refuses root: the server runs as `postgres`
            shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self.as_pg(f"{self.bin}/initdb", "-D", self.data, "--auth=trust", "-U", "postgres")
        self.start()
        self.n = 0

    def start(self):
        self.as_pg(f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.data, "log"),
                   "-w", "-o", f"-k {self.data} -h 127.0.0.1 -p {self.port} -c fsync=on", "start")

    def halt(self):
        self.as_pg(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def as_pg(self, *cmd):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        r = subprocess.run([*prefix, *cmd], capture_output=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    def sql(self, db, q):
        r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", q],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [line.split("|") for line in r.stdout.decode().splitlines() if line]

    def new_db(self):
        self.n += 1
        name = f"corral{self.n}"
        self.sql("postgres", f"CREATE DATABASE {name}")
        return name, f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.halt()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    if not PG_BIN or not shutil.which("psql"):
        pytest.skip("PostgreSQL server binaries (Debian's postgresql) are not installed")
    try:
        import pwd
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and no `postgres` OS user to run the test's PostgreSQL as")
    p = Postgres()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="corral-queue-pg-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def submit_many(d, params_list):
    """Pipelined submits on one connection; the ids in order."""
    ids = []
    with d.client() as c:
        for off in range(0, len(params_list), 500):
            chunk = params_list[off:off + 500]
            c.send_raw("".join(json.dumps({"jsonrpc": "2.0", "id": off + i, "method": "submit",
                                           "params": p}) + "\n"
                               for i, p in enumerate(chunk)).encode())
            for _ in chunk:
                r = c.read()
                assert "result" in r, r
                ids.append(r["result"]["id"])
    return ids


def stop(*daemons):
    """Stops each daemon that was started (a test may fail before starting all)."""
    for d in daemons:
        if d:
            d.stop()


def gone(pid):
    """The process has exited (reaped, or a zombie); it may go between any two looks."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def counts(d):
    return d.call("tasks", {"limit": 1})["result"]["counts"]


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def test_two_daemons_run_every_task_exactly_once(pg, tmp):
    db, url = pg.new_db()
    out = os.path.join(tmp, "ran")
    a = Daemon(extra=["--queue", url, "--max-running", "16"])
    b = None
    try:
        b = Daemon(extra=["--queue", url, "--max-running", "16"])
        start = time.monotonic()
        params = [{"shell": f'echo "$CORRAL_TASK" >> {out}'} for _ in range(N_TASKS)]
        ids = submit_many(a, params[:N_TASKS // 2]) + submit_many(b, params[N_TASKS // 2:])
        assert len(set(ids)) == N_TASKS
        c = wait_until(lambda: counts(b)["succeeded"] == N_TASKS and counts(b),
                       timeout=max(120, N_TASKS / 10), interval=0.2,
                       what=f"{N_TASKS} tasks to succeed")
        elapsed = time.monotonic() - start
        print(f"{N_TASKS} tasks on 2 daemons in {elapsed:.1f}s ({N_TASKS / elapsed:.0f}/s)")
        assert c["queued"] == c["running"] == c["failed"] == c["crashed"] == 0
        ran = lines(out)
        assert len(ran) == N_TASKS, "a task ran twice or not at all"
        assert sorted(ran) == sorted(ids)
        # Both daemons claimed work, one attempt per task.
        per = dict(pg.sql(db, "SELECT daemon_pid, count(*) FROM attempts GROUP BY 1"))
        assert set(per) == {str(a.proc.pid), str(b.proc.pid)}, per
        assert sum(int(n) for n in per.values()) == N_TASKS
        # Any daemon answers for any task; `wait` on the other daemon's task works.
        t = b.call("task_wait", {"id": ids[0]})["result"]
        assert t["state"] == "succeeded" and len(t["attempt_list"]) == 1
    finally:
        stop(a, b)
    assert a.proc.returncode == 0 and b.proc.returncode == 0


def test_killed_daemon_tasks_finish_on_the_other_after_its_lease(pg, tmp):
    db, url = pg.new_db()
    out = os.path.join(tmp, "ran")
    state_a = os.path.join(tmp, "state-a")
    n = 120
    a = Daemon(extra=["--queue", url, "--lease", "2s", "--max-running", "8"], state_dir=state_a)
    b = None
    try:
        params = [{"shell": f'sleep 0.5; echo "$CORRAL_TASK" >> {out}', "retries": 2,
                   "backoff_s": 0} for _ in range(n)]
        ids = submit_many(a, params)
        wait_until(lambda: len(lines(out)) >= 8, timeout=30, what="daemon A to run some tasks")
        b = Daemon(extra=["--queue", url, "--lease", "2s", "--max-running", "8"])
        # The host of A dies: A and every process of its cells, at once (SIGSTOP first, so that
        # A records nothing more while its cells are being killed).
        a.proc.send_signal(signal.SIGSTOP)
        victims = psutil.Process(a.proc.pid).children(recursive=True)
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        a.proc.kill()
        a.proc.wait()
        killed_at = time.time()
        held = pg.sql(db, f"SELECT task_id FROM attempts WHERE state = 'running' "
                          f"AND daemon_pid = {a.proc.pid}")
        assert held, "A held no running attempt when it died"
        c = wait_until(lambda: counts(b)["succeeded"] == n and counts(b), timeout=120,
                       interval=0.2, what="every task to succeed on daemon B")
        assert c["queued"] == c["running"] == c["crashed"] == c["failed"] == 0
        # A's attempts were reclaimed only after their lease, and rerun by B.
        rec = pg.sql(db, "SELECT task_id, ended_ms FROM attempts WHERE reason = 'lease_expired'")
        assert {r[0] for r in rec} == {h[0] for h in held}
        assert min(int(r[1]) for r in rec) / 1000 >= killed_at - 0.2  # never before A died
        for tid in {r[0] for r in rec}:
            t = b.call("task", {"id": f"t-{tid}"})["result"]
            assert t["state"] == "succeeded"
            assert t["attempt_list"][-1]["cell"]["daemon_pid"] == b.proc.pid
        ran = lines(out)
        assert sorted(set(ran)) == sorted(ids), "a task is missing"
        # A task ran twice only if its first run finished but A died before recording it.
        reclaimed = {f"t-{r[0]}" for r in rec}
        dup = {t for t in ran if ran.count(t) > 1}
        assert dup <= reclaimed, dup
    finally:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()
        stop(a, b)
    # A's state dir: its next start tears down whatever its cells left, then stops cleanly.
    a2 = Daemon(extra=["--queue", url, "--lease", "2s"], state_dir=state_a)
    a2.stop()
    assert a2.proc.returncode == 0, a2.text()


def test_lost_lease_kills_the_cell(pg, tmp):
    """A daemon that stalls past its lease (SIGSTOP here) has its attempt reclaimed by the other;
    when it runs again its heartbeat finds the attempt gone and kills the cell."""
    db, url = pg.new_db()
    flag = os.path.join(tmp, "started")
    a = Daemon(extra=["--queue", url, "--lease", "2s"])
    b = None
    try:
        tid = a.call("submit", {"shell": f"echo x >> {flag}; sleep 60", "retries": 0})
        tid = tid["result"]["id"]
        wait_until(lambda: os.path.exists(flag), what="the task to start")
        pid = wait_until(lambda: a.call("task", {"id": tid})["result"]["attempt_list"][0]["cell"]
                         ["leader_pid"], what="its leader")
        b = Daemon(extra=["--queue", url, "--lease", "2s"])
        a.proc.send_signal(signal.SIGSTOP)
        try:
            t = b.call("task_wait", {"id": tid, "timeout_s": 20})["result"]
        finally:
            a.proc.send_signal(signal.SIGCONT)
        assert t["state"] == "crashed" and t["attempt_list"][0]["reason"] == "lease_expired"
        wait_until(lambda: gone(pid), timeout=15, what="the cell of the lost lease to be killed")
        wait_until(lambda: "its lease was reclaimed" in a.text(), what="A to say why")
        assert a.call("task", {"id": tid})["result"]["state"] == "crashed"
    finally:
        stop(a, b)
    assert a.proc.returncode == 0, a.text()


def test_lost_database_kills_the_cell_and_the_daemon_carries_on(pg, tmp):
    """Renewal fails (the database is gone): the cell is killed at once, since another daemon may
    take the task after the lease. The database back, the attempt is reclaimed and retried."""
    db, url = pg.new_db()
    flag = os.path.join(tmp, "started")
    a = Daemon(extra=["--queue", url, "--lease", "2s"])
    try:
        script = f"if [ -e {flag} ]; then exit 0; fi; touch {flag}; sleep 60"
        tid = a.call("submit", {"shell": script, "retries": 1, "backoff_s": 0})["result"]["id"]
        wait_until(lambda: os.path.exists(flag), what="the task to start")
        pid = wait_until(lambda: a.call("task", {"id": tid})["result"]["attempt_list"][0]["cell"]
                         ["leader_pid"], what="its leader")
        pg.halt()
        try:
            wait_until(lambda: gone(pid), timeout=15,
                       what="the cell to be killed when its lease cannot be renewed")
            assert "lease could not be renewed" in a.text()
        finally:
            pg.start()
        e = a.call("task", {"id": tid})
        assert "result" in e or "cannot be reached" in e["error"]["message"], e
        wait_until(lambda: "result" in a.call("task", {"id": tid}), what="A to reconnect")
        with a.client() as c:
            c.s.settimeout(40)
            t = c.call("task_wait", {"id": tid, "timeout_s": 30})["result"]
        assert t["state"] == "succeeded" and t["attempts"] == 2, t
        assert t["attempt_list"][0]["reason"] == "lease_expired"
        assert a.proc.poll() is None
    finally:
        a.stop()
    assert a.proc.returncode == 0, a.text()


def test_cancel_through_another_daemon(pg, tmp):
    db, url = pg.new_db()
    flag = os.path.join(tmp, "started")
    a = Daemon(extra=["--queue", url, "--lease", "3s"])
    b = None
    try:
        tid = a.call("submit", {"shell": f"touch {flag}; sleep 60"})["result"]["id"]
        wait_until(lambda: os.path.exists(flag), what="the task to start on A")
        b = Daemon(extra=["--queue", url, "--lease", "3s"])
        with b.client() as c:
            c.s.settimeout(30)
            t = c.call("cancel", {"id": tid})["result"]
        assert t["state"] == "cancelled"
        assert a.call("task", {"id": tid})["result"]["attempt_list"][0]["state"] == "cancelled"
    finally:
        stop(a, b)


def test_group_limit_holds_across_daemons(pg, tmp):
    db, url = pg.new_db()
    live = os.path.join(tmp, "live")
    seen = os.path.join(tmp, "seen")
    os.mkdir(live)
    a = Daemon(extra=["--queue", url])
    b = None
    try:
        b = Daemon(extra=["--queue", url])
        assert a.call("group_set", {"group": "g", "parallel": 2})["result"]["parallel"] == 2
        wait_until(lambda: any(g["group"] == "g" and g["parallel"] == 2
                               for g in b.call("groups")["result"]["groups"]), what="limit seen")
        script = (f'touch {live}/$CORRAL_TASK; ls {live} | wc -l >> {seen}; sleep 0.2; '
                  f'rm {live}/$CORRAL_TASK')
        ids = submit_many(a, [{"shell": script, "group": "g"}] * 15) + \
            submit_many(b, [{"shell": script, "group": "g"}] * 15)
        wait_until(lambda: counts(a)["succeeded"] == len(ids), timeout=60, interval=0.2,
                   what="the group's tasks to finish")
        observed = [int(x) for x in lines(seen)]
        assert len(observed) == 30 and max(observed) <= 2, observed
        # Both daemons claim from the group; which one wins each freed slot is a race (often the
        # daemon whose cell just ended), so who ran what is not asserted.
    finally:
        stop(a, b)


def test_key_retry_and_logs_across_daemons(pg, tmp):
    db, url = pg.new_db()
    a = Daemon(extra=["--queue", url])
    b = None
    try:
        b = Daemon(extra=["--queue", url])
        r1 = a.call("submit", {"argv": ["/bin/echo", "hello"], "key": "k1"})["result"]
        r2 = b.call("submit", {"argv": ["/bin/echo", "hello"], "key": "k1"})["result"]
        assert r1 == {"id": r1["id"], "existing": False}
        assert r2 == {"id": r1["id"], "existing": True}
        t = b.call("task_wait", {"id": r1["id"], "timeout_s": 20})["result"]
        assert t["state"] == "succeeded"
        # Output files stay on the host that ran the attempt: ask the daemon that ran it.
        ran_on = a if t["attempt_list"][0]["cell"]["daemon_pid"] == a.proc.pid else b
        assert corral("logs", "--socket", ran_on.sock, r1["id"]).stdout == b"hello\n"
        assert b.call("retry", {"id": r1["id"]})["result"]["state"] == "queued"
        t = a.call("task_wait", {"id": r1["id"], "timeout_s": 20})["result"]
        assert t["state"] == "succeeded" and t["attempts"] == 2
        e = a.call("cancel", {"id": r1["id"]})["error"]
        assert "already finished" in e["message"]
        assert "no task 't-999'" in b.call("task", {"id": "t-999"})["error"]["message"]
    finally:
        stop(a, b)


def output_files(d, tid=None):
    tasks = os.path.join(d.state, "tasks")
    return sorted(os.path.join(tasks, f) for f in os.listdir(tasks)
                  if tid is None or f.startswith(tid + "."))


def test_retain_removes_finished_tasks_and_their_output_files(pg, tmp):
    db, url = pg.new_db()
    d = Daemon(extra=["--queue", url, "--retain", "2s"])
    try:
        done = d.call("submit", {"shell": "echo kept-for-2s; echo err >&2"})["result"]["id"]
        t = d.call("task_wait", {"id": done, "timeout_s": 20})["result"]
        assert t["state"] == "succeeded"
        assert d.call("task_output", {"id": done})["result"]["data"] == "kept-for-2s\n"
        files = output_files(d, done)
        assert len(files) == 2, files  # stdout and stderr, the only streams with bytes
        # A task still running when the others expire is not touched.
        live = d.call("submit", {"argv": ["/bin/sleep", "30"]})["result"]["id"]
        wait_until(lambda: d.call("task", {"id": live})["result"]["state"] == "running",
                   what="long task running")
        wait_until(lambda: "error" in d.call("task", {"id": done}), timeout=15,
                   what="finished task removed after --retain")
        # Not before its retention (the database's clock and this host's are the same here).
        assert time.time() >= t["updated"] + 2.0 - 0.05
        assert not any(os.path.exists(f) for f in files)
        tid = done[2:]
        assert pg.sql(db, f"SELECT count(*) FROM attempts WHERE task_id = {tid}") == [["0"]]
        c = counts(d)
        assert c["succeeded"] == 0 and c["running"] == 1, c
        assert d.call("task", {"id": live})["result"]["state"] == "running"
        assert d.call("cancel", {"id": live})["result"]["state"] == "cancelled"
        assert "failed" not in d.text(), d.text()
    finally:
        d.stop()
    assert d.proc.returncode == 0


def test_retain_on_two_daemons_removes_each_task_once(pg, tmp):
    """Both daemons prune the shared rows at once (SKIP LOCKED: disjoint batches); each unlinks
    the files of its own state dir, the others' reach it through gone_files."""
    db, url = pg.new_db()
    out = os.path.join(tmp, "ran")
    n = 300
    a = Daemon(extra=["--queue", url, "--retain", "2s", "--max-running", "8"])
    b = None
    try:
        b = Daemon(extra=["--queue", url, "--retain", "2s", "--max-running", "8"])
        live = a.call("submit", {"argv": ["/bin/sleep", "60"]})["result"]["id"]
        params = [{"shell": 'echo "$CORRAL_TASK" >> ' + out + '; echo "$CORRAL_TASK"'}] * n
        ids = submit_many(a, params[:n // 2]) + submit_many(b, params[n // 2:])
        wait_until(lambda: len(lines(out)) == n, timeout=120, interval=0.2,
                   what=f"{n} tasks to run")
        wait_until(lambda: pg.sql(db, "SELECT count(*) FROM tasks") == [["1"]], timeout=30,
                   interval=0.2, what="every finished task pruned")
        assert sorted(lines(out)) == sorted(ids), "a task ran twice or not at all"
        ran = dict(pg.sql(db, "SELECT daemon_pid, count(*) FROM attempts GROUP BY 1"))
        assert ran == {str(a.proc.pid): "1"} or ran == {str(b.proc.pid): "1"}, ran
        # Each daemon's output files go, drained from gone_files by their owner.
        wait_until(lambda: output_files(a) == output_files(b) == [] and
                   pg.sql(db, "SELECT count(*) FROM gone_files") == [["0"]],
                   timeout=15, what="every output file removed by its daemon")
        assert "error" not in d_call_state(a, live) and d_call_state(a, live) == "running"
        for d in (a, b):
            wait_until(lambda: counts(d)["succeeded"] == 0 and counts(d)["running"] == 1,
                       timeout=30, what="counts to catch up")
        for d in (a, b):
            assert "failed" not in d.text() and "error" not in d.text().lower(), d.text()
    finally:
        stop(a, b)
    assert a.proc.returncode == 0 and b.proc.returncode == 0


def d_call_state(d, tid):
    r = d.call("task", {"id": tid})
    return r["result"]["state"] if "result" in r else "error"


def test_daemon_without_retain_removes_files_of_tasks_another_pruned(pg, tmp):
    """A ran the tasks (files in A's state dir) and keeps everything; B prunes the rows with
    --retain; A unlinks its files once B's deletion is committed, never B."""
    db, url = pg.new_db()
    a = Daemon(extra=["--queue", url])
    b = None
    try:
        ids = submit_many(a, [{"shell": "echo out; echo err >&2"}] * 5)
        for tid in ids:
            assert a.call("task_wait", {"id": tid, "timeout_s": 20})["result"]["state"] == \
                "succeeded"
        files = output_files(a)
        assert len(files) == 10, files
        b = Daemon(extra=["--queue", url, "--retain", "1s"])
        wait_until(lambda: pg.sql(db, "SELECT count(*) FROM tasks") == [["0"]], timeout=15,
                   what="B to prune A's tasks")
        # The rows are gone; the files stay until A drains the names B handed it.
        wait_until(lambda: not any(os.path.exists(f) for f in files), timeout=20,
                   what="A to remove its own files")
        assert pg.sql(db, "SELECT count(*) FROM gone_files") == [["0"]]
    finally:
        stop(a, b)
    assert a.proc.returncode == 0 and b.proc.returncode == 0


def test_bad_conninfo_is_a_clear_error(tmp):
    port = free_port()  # nothing listens there
    r = subprocess.run([CORRAL, "daemon", "--socket", os.path.join(tmp, "s"), "--state-dir",
                        os.path.join(tmp, "st"), "--metrics", "off", "--queue",
                        f"postgres://nobody:s3cret@127.0.0.1:{port}/nope?connect_timeout=5"],
                       capture_output=True, timeout=30)
    assert r.returncode == 125, r
    assert b"cannot connect to PostgreSQL" in r.stderr and str(port).encode() in r.stderr
    assert b"s3cret" not in r.stderr and b"nobody:***@" in r.stderr
    r = subprocess.run([CORRAL, "daemon", "--socket", os.path.join(tmp, "s"), "--state-dir",
                        os.path.join(tmp, "st"), "--metrics", "off", "--queue", "mysql://x/y"],
                       capture_output=True, timeout=30)
    assert r.returncode == 125 and b"neither sqlite nor a PostgreSQL conninfo" in r.stderr
    r = corral("daemon", "--queue", "postgres://x/y", "--lease", "soon")
    assert r.returncode == 125 and b"--lease: 'soon'" in r.stderr
    for bad, why in (("soon", b"--retain: 'soon' is not a duration"),
                     ("500ms", b"--retain: '500ms' is not a duration of 1s or more")):
        r = corral("daemon", "--queue", "postgres://x/y", "--retain", bad)
        assert r.returncode == 125 and why in r.stderr, r
