"""`corral init` as a real PID 1 in a new PID namespace (`unshare --pid --fork --mount-proc`) and as
a plain subreaper: zombie reaping, exit codes, signal forwarding, -g, the orphan policy, and the
behaviours tini's and dumb-init's READMEs document, one by one.

Every test runs each case in both modes where both apply ("pid1" and "subreaper"). Processes are
found and cleaned up by pid: a PID 1 that is killed takes its whole namespace with it, and the
`marker` fixture asserts that no process carrying the test's marker is left."""

import json
import os
import pty
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from conftest import CORRAL, PAYLOAD, proc_state, wait_until

MODES = ["pid1", "subreaper"]


def _have_pid_namespaces():
    try:
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


HAVE_PIDNS = _have_pid_namespaces()


def _skip_without_pidns(mode):
    if mode == "pid1" and not HAVE_PIDNS:
        pytest.skip("unshare --pid --fork --mount-proc fails here (needs root or user namespaces)")


def children_of(pid):
    """The host pids of pid's children (zombies included), [] once pid is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def argv_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


class Init:
    """A running `corral init`: proc is what we started (unshare or corral), pid is corral init's
    own host pid (what a container runtime would signal), log its stderr file."""

    def __init__(self, proc, pid, log):
        self.proc, self.pid, self.log_path = proc, pid, log

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_spawned(self):
        """Waits until the child exists, which means corral init's signals are blocked: a signal
        sent earlier would hit a process that cannot catch it yet (and is lost on a PID 1)."""
        return wait_until(lambda: (children_of(self.pid) or [None])[0], what="child spawned")

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"corral init still running after {timeout}s; its log:\n"
                                 + self.log()[-3000:]) from None


@contextmanager
def start_init(mode, args, cmd, tmp_path, marker, stdout=subprocess.DEVNULL, pass_fds=()):
    _skip_without_pidns(mode)
    env = dict(os.environ, CORRAL_TEST_MARK=marker)
    argv = [CORRAL, "init", *args, "--", *cmd]
    if mode == "pid1":
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    log = tmp_path / f"init-{time.monotonic_ns()}.log"
    with open(log, "w") as errf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=errf,
                                env=env, pass_fds=pass_fds)
    try:
        if mode == "pid1":
            # corral init is unshare's only child; it stays that until it exits.
            pid = wait_until(lambda: (children_of(proc.pid) or [None])[0]
                             or (proc.poll() is not None and -1), what="corral init as PID 1")
        else:
            pid = proc.pid
        yield Init(proc, pid, log)
    finally:
        if proc.poll() is None:
            # Killing PID 1 kills its namespace; as subreaper its orphans are the marker's job.
            if mode == "pid1" and pid > 0 and pid in children_of(proc.pid):
                os.kill(pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout=30)


def run_init(mode, args, cmd, tmp_path, marker, timeout=60):
    with start_init(mode, args, cmd, tmp_path, marker) as init:
        rc = init.wait(timeout)
        return rc, init.log()


def lines(path):
    try:
        with open(path) as f:
            return f.read().split("\n")
    except FileNotFoundError:
        return []


def count(path, word):
    return sum(1 for ln in lines(path) if f" {word}" in ln)


# --- reaping -----------------------------------------------------------------------------------

ZOMBIE_CHECKER = textwrap.dedent("""
    # Runs inside the PID namespace (its /proc is the namespace's): samples the zombie count while
    # the orphan storm runs and after it, and writes what it saw as JSON.
    import json, os, sys, time
    done_flag, out = sys.argv[1], sys.argv[2]
    me = os.getpid()

    def sample():
        zombies = alive = 0
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    st = f.read()
            except OSError:
                continue
            comm = st[st.find(b"(") + 1:st.rfind(b")")]
            state = st[st.rfind(b")") + 2:][:1]
            if state == b"Z":
                zombies += 1
            elif comm.startswith(b"corral-payload"):
                alive += 1
        return zombies, alive

    during, after = [], []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        z, alive = sample()
        if os.path.exists(done_flag) and alive == 0:
            break
        during.append(z)
        time.sleep(0.005)
    # The storm is over: every orphan has exited. Zombies must be gone now and stay gone.
    settle = time.monotonic() + 2
    while sample()[0] and time.monotonic() < settle:
        time.sleep(0.005)
    for _ in range(50):
        after.append(sample()[0])
        time.sleep(0.005)
    json.dump({"during": during, "after": after}, open(out, "w"))
""")


def test_pid1_reaps_1000_double_forked_orphans(tmp_path, marker):
    checker = tmp_path / "checker.py"
    checker.write_text(ZOMBIE_CHECKER)
    flag, out = tmp_path / "storm-done", tmp_path / "zombies.json"
    script = (f"{sys.executable} {checker} {flag} {out} & "
              f"{PAYLOAD} fork-orphans 1000 0.05 && touch {flag}; wait")
    rc, log = run_init("pid1", ["-v"], ["sh", "-c", script], tmp_path, marker, timeout=120)
    assert rc == 0, log[-2000:]
    seen = json.loads(out.read_text())
    assert seen["after"] and all(z == 0 for z in seen["after"]), seen["after"]
    # Reaping keeps up during the storm: zombies never pile up towards the 1,000 orphans.
    assert max(seen["during"], default=0) < 100, max(seen["during"])
    reaped = {ln.split()[3] for ln in log.splitlines() if ln.startswith("corral init: reaped")}
    assert len(reaped) >= 1000 + 1, len(reaped)  # every orphan, and the 1000 middle children


def test_subreaper_reaps_orphans_and_leaves_no_zombie(tmp_path, marker):
    with start_init("subreaper", ["-v"], [PAYLOAD, "fork-orphans", "300", "0.05", "+", "sleep",
                                          "1"], tmp_path, marker) as init:
        # While the child still runs, every orphan it made has been adopted and reaped.
        def no_orphans_left():
            kids = children_of(init.pid)
            return len(kids) == 1 and all(proc_state(k) != "Z" for k in kids)
        wait_until(no_orphans_left, timeout=20, what="orphans reaped while the child runs")
        assert init.wait() == 0
    reaped = [ln for ln in init.log().splitlines() if ln.startswith("corral init: reaped")]
    assert len(reaped) == 301, reaped[-3:]  # 300 orphans + the child; middle children: payload's


INHERIT_ZOMBIES = textwrap.dedent("""
    # Makes 3 zombie children, then execs corral init: the zombies are its children from the
    # start, and no SIGCHLD will ever come for them.
    import os, sys, time
    for _ in range(3):
        if os.fork() == 0:
            os._exit(0)
    me = os.getpid()
    def states():
        out = []
        for k in open(f"/proc/{me}/task/{me}/children").read().split():
            st = open(f"/proc/{k}/stat", "rb").read()
            out.append(st[st.rfind(b")") + 2:][:1])
        return out
    deadline = time.monotonic() + 10
    while states() != [b"Z"] * 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.execv(sys.argv[1], [sys.argv[1], "init", "-v", "--", "true"])
""")


@pytest.mark.parametrize("mode", MODES)
def test_reaps_zombies_inherited_before_start(mode, tmp_path, marker):
    _skip_without_pidns(mode)
    argv = [sys.executable, "-c", INHERIT_ZOMBIES, CORRAL]
    if mode == "pid1":
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    r = subprocess.run(argv, capture_output=True, timeout=30,
                       env=dict(os.environ, CORRAL_TEST_MARK=marker))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(b"corral init: reaped") == 4, r.stderr  # 3 inherited + `true`


# --- exit codes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_every_exit_code_propagates(mode, tmp_path, marker):
    _skip_without_pidns(mode)
    env = dict(os.environ, CORRAL_TEST_MARK=marker)
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if mode == "pid1" else []
    wrong = []
    for code in range(256):
        r = subprocess.run([*prefix, CORRAL, "init", "--", PAYLOAD, "exit", str(code)], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if r.returncode != code:
            wrong.append((code, r.returncode))
    assert not wrong


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_child_killed_by_signal_exits_128_plus_n(mode, sig, tmp_path, marker):
    rc, log = run_init(mode, [], [PAYLOAD, "kill-self", str(int(sig))], tmp_path, marker)
    assert rc == 128 + sig, log


def test_exec_failures_exit_127_and_126(tmp_path, marker):
    rc, log = run_init("subreaper", [], ["/nonexistent/cmd"], tmp_path, marker)
    assert rc == 127 and "No such file" in log
    plain = tmp_path / "not-executable"
    plain.write_text("data\n")
    plain.chmod(0o644)
    rc, log = run_init("subreaper", [], [str(plain)], tmp_path, marker)
    assert rc == 126 and "Permission denied" in log


# --- signal forwarding -----------------------------------------------------------------------

FORWARDED = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
def test_signal_forwarded_and_child_handler_decides_exit(mode, sig, tmp_path, marker):
    f = tmp_path / "events"
    with start_init(mode, [], [PAYLOAD, "on-signal", str(int(sig)), "7", "30", str(f)],
                    tmp_path, marker) as init:
        wait_until(lambda: count(f, "ready") == 1, what="child handler installed")
        init.signal(sig)
        assert init.wait() == 7
    assert count(f, f"got {int(sig)}") == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
def test_signal_forwarded_to_default_disposition_exits_128_plus_n(mode, sig, tmp_path, marker):
    with start_init(mode, [], [PAYLOAD, "sleep", "30"], tmp_path, marker) as init:
        init.wait_spawned()
        init.signal(sig)
        assert init.wait() == 128 + sig


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("group", [True, False], ids=["-g", "child-only"])
def test_group_flag_reaches_whole_process_group(mode, group, tmp_path, marker):
    f = tmp_path / "events"
    # With -g every member gets the signal and exits by itself: wait for them, or the orphan
    # SIGTERM could beat a member's handler to its "got" line.
    args = ["-g", "--orphans", "wait"] if group else []
    with start_init(mode, args, [PAYLOAD, "on-signal", "10", "5", "30", str(f), "3"],
                    tmp_path, marker) as init:
        wait_until(lambda: count(f, "ready") == 4, what="4 group members ready")
        init.signal(signal.SIGUSR1)
        assert init.wait() == 5
    # With -g the 3 forked members got it too; without, only the child did (the others were then
    # ended as orphans by SIGTERM, which they do not handle).
    assert count(f, "got 10") == (4 if group else 1)


# --- orphans left when the child exits ---------------------------------------------------------

def leave_orphan(f, orphan, setup=""):
    """A child that starts `orphan` in the background, waits until it is ready, and exits 4."""
    return ["sh", "-c", f"{setup} {orphan} & until grep -q ready {f}; do sleep 0.01; done; exit 4"]


@pytest.mark.parametrize("mode", MODES)
def test_orphans_term_gets_sigterm_before_kill(mode, tmp_path, marker):
    f = tmp_path / "events"
    cmd = leave_orphan(f, f"{PAYLOAD} on-signal 15 0 60 {f}")
    t0 = time.monotonic()
    rc, log = run_init(mode, ["--orphans", "term", "--grace", "10s"], cmd, tmp_path, marker)
    assert rc == 4, log
    assert count(f, "got 15") == 1  # it was asked, with SIGTERM
    assert time.monotonic() - t0 < 5  # and not made to wait for the grace


@pytest.mark.parametrize("mode", MODES)
def test_orphans_term_kills_after_grace_when_ignored(mode, tmp_path, marker):
    f = tmp_path / "events"
    cmd = leave_orphan(f, f"{PAYLOAD} on-signal 12 0 60 {f}", setup="trap '' TERM;")
    t0 = time.monotonic()
    rc, log = run_init(mode, ["--grace", "500ms"], cmd, tmp_path, marker)
    took = time.monotonic() - t0
    assert rc == 4, log
    assert count(f, "done") == 0 and count(f, "got") == 0
    assert 0.5 <= took < 3.0, took


@pytest.mark.parametrize("mode", MODES)
def test_orphans_kill_sends_sigkill_at_once(mode, tmp_path, marker):
    f = tmp_path / "events"
    cmd = leave_orphan(f, f"{PAYLOAD} on-signal 15 0 60 {f}")
    t0 = time.monotonic()
    rc, log = run_init(mode, ["--orphans", "kill", "--grace", "10s"], cmd, tmp_path, marker)
    assert rc == 4, log
    assert count(f, "got") == 0  # no SIGTERM first
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("mode", MODES)
def test_orphans_wait_lets_them_finish(mode, tmp_path, marker):
    f = tmp_path / "events"
    cmd = leave_orphan(f, f"{PAYLOAD} on-signal 15 0 0.7 {f}")
    t0 = time.monotonic()
    rc, log = run_init(mode, ["--orphans", "wait"], cmd, tmp_path, marker)
    assert rc == 4, log
    assert count(f, "done") == 1 and count(f, "got") == 0
    assert time.monotonic() - t0 >= 0.7


@pytest.mark.parametrize("mode", MODES)
def test_orphans_wait_ends_on_sigterm(mode, tmp_path, marker):
    f = tmp_path / "events"
    cmd = leave_orphan(f, f"{PAYLOAD} on-signal 15 0 60 {f}")
    with start_init(mode, ["-v", "--orphans", "wait"], cmd, tmp_path, marker) as init:
        # The child (sh) is gone once corral init's only child is the orphan.
        def only_orphan_left():
            kids = children_of(init.pid)
            return (count(f, "ready") == 1 and len(kids) == 1 and proc_state(kids[0]) != "Z"
                    and argv_of(kids[0])[:2] == [PAYLOAD, "on-signal"])
        wait_until(only_orphan_left, what="child gone, orphan waited for")
        init.signal(signal.SIGTERM)
        assert init.wait() == 4
    assert count(f, "got 15") == 1


def test_subreaper_terms_orphans_of_orphans(tmp_path, marker):
    # An orphan that still has children of its own: they reach corral init only when it dies, and
    # must get their SIGTERM then (not wait for the grace's SIGKILL).
    f = tmp_path / "events"
    inner = f"sh -c \"{PAYLOAD} sleep 60 & {PAYLOAD} on-signal 12 0 60 {f}\""
    cmd = leave_orphan(f, inner)
    t0 = time.monotonic()
    rc, log = run_init("subreaper", ["-v", "--grace", "20s"], cmd, tmp_path, marker)
    assert rc == 4, log
    assert time.monotonic() - t0 < 10, log
    assert log.count("sent SIGTERM to orphan") >= 3, log


# --- tini's README, one by one ---------------------------------------------------------------

def test_tini_exit_code_remapping_e(tmp_path, marker):
    with start_init("subreaper", ["-e", "143"], [PAYLOAD, "sleep", "30"], tmp_path,
                    marker) as init:
        init.wait_spawned()
        init.signal(signal.SIGTERM)
        assert init.wait() == 0
    assert run_init("subreaper", ["-e", "3"], [PAYLOAD, "exit", "3"], tmp_path, marker)[0] == 0
    assert run_init("subreaper", ["-e", "3"], [PAYLOAD, "exit", "4"], tmp_path, marker)[0] == 4


def test_tini_s_is_accepted_and_not_pid1_still_reaps(tmp_path, marker):
    rc, log = run_init("subreaper", ["-s", "-v"], [PAYLOAD, "fork-orphans", "3", "0"], tmp_path,
                       marker)
    assert rc == 0
    assert log.count("corral init: reaped") == 4, log


def test_tini_works_without_double_dash(tmp_path, marker):
    r = subprocess.run([CORRAL, "init", PAYLOAD, "exit", "9"], capture_output=True, timeout=30,
                       env=dict(os.environ, CORRAL_TEST_MARK=marker))
    assert r.returncode == 9


def test_fds_are_passed_to_the_command(tmp_path, marker):
    # Containers hand fds over on purpose (socket activation); corral init passes them through.
    rfd, wfd = os.pipe()
    try:
        with start_init("subreaper", [], [PAYLOAD, "list-fds"], tmp_path, marker,
                        stdout=subprocess.PIPE, pass_fds=(rfd,)) as init:
            out = init.proc.stdout.read().decode().split()
            init.proc.stdout.close()
            assert init.wait() == 0
        assert str(rfd) in out, out
    finally:
        os.close(rfd)
        os.close(wfd)


# --- dumb-init's README, one by one ----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_dumb_init_setsid_child_leads_its_own_session(mode, tmp_path, marker):
    with start_init(mode, [], [PAYLOAD, "print-session"], tmp_path, marker,
                    stdout=subprocess.PIPE) as init:
        out = init.proc.stdout.read().decode()
        init.proc.stdout.close()
        assert init.wait() == 0
    fields = dict(kv.split("=") for kv in out.split())
    assert fields["pid"] == fields["pgid"] == fields["sid"], out


def test_dumb_init_child_takes_the_terminal_and_no_hangup(tmp_path, marker):
    # corral init as the session leader of a pty (as PID 1 of `docker run -t` is): it lets go of
    # the terminal, the child takes it, and the SIGHUP that letting go causes is not forwarded.
    f = tmp_path / "events"
    pid, master = pty.fork()
    if pid == 0:
        os.environ["CORRAL_TEST_MARK"] = marker
        try:
            os.execv(CORRAL, [CORRAL, "init", "--", PAYLOAD, "print-session", "+",
                              "on-signal", "1", "9", "0.3", str(f)])
        finally:
            os._exit(120)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once every holder of the slave side is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, out
    fields = dict(kv.split("=") for kv in out.decode().split())
    assert fields["ctty"] == "yes" and fields["sid"] == fields["pid"], out
    assert count(f, "done") == 1 and count(f, "got") == 0


def test_dumb_init_job_control_stops_child_and_itself(tmp_path, marker):
    with start_init("subreaper", [], [PAYLOAD, "sleep", "30"], tmp_path, marker) as init:
        child = init.wait_spawned()
        wait_until(lambda: argv_of(child)[:2] == [PAYLOAD, "sleep"], what="exec")
        init.signal(signal.SIGTSTP)
        # The child gets SIGSTOP (SIGTSTP would be dropped in its orphaned group) and
        # corral init stops itself, so a shell would see the job stop.
        wait_until(lambda: proc_state(child) == "T" and proc_state(init.pid) == "T",
                   what="child and init stopped")
        init.signal(signal.SIGCONT)
        wait_until(lambda: proc_state(child) != "T" and proc_state(init.pid) != "T",
                   what="child and init resumed")
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


@pytest.mark.parametrize("mode", MODES)
def test_dumb_init_rewrite_changes_the_forwarded_signal(mode, tmp_path, marker):
    f = tmp_path / "events"
    with start_init(mode, ["-r", "TERM:USR1"], [PAYLOAD, "on-signal", "10", "7", "30", str(f)],
                    tmp_path, marker) as init:
        wait_until(lambda: count(f, "ready") == 1, what="child ready")
        init.signal(signal.SIGTERM)
        assert init.wait() == 7
    assert count(f, "got 10") == 1


def test_dumb_init_rewrite_to_zero_drops_the_signal(tmp_path, marker):
    f = tmp_path / "events"
    with start_init("subreaper", ["-v", "-r", "15:0"],
                    [PAYLOAD, "on-signal", "15", "7", "30", str(f)], tmp_path, marker) as init:
        wait_until(lambda: count(f, "ready") == 1, what="child ready")
        init.signal(signal.SIGTERM)
        wait_until(lambda: "dropped SIGTERM" in init.log(), what="TERM dropped")
        init.signal(signal.SIGINT)
        assert init.wait() == 128 + signal.SIGINT
    assert count(f, "got") == 0


# --- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [[], ["--orphans", "sometimes", "--", "true"],
                                  ["--grace", "soon", "--", "true"], ["--grace", "inf", "--", "true"],
                                  ["-e", "300", "--", "true"], ["-e", "2x", "--", "true"],
                                  ["-r", "TERM", "--", "true"], ["--bogus", "--", "true"],
                                  ["--serve", "--", "true"]])
def test_bad_usage_exits_125(args):
    r = subprocess.run([CORRAL, "init", *args], capture_output=True, timeout=10)
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith(b"corral init: ")


def test_help_explains_and_exits_0():
    r = subprocess.run([CORRAL, "init", "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0
    for word in (b"--orphans", b"-g", b"subreaper", b"128+N", b"ENTRYPOINT"):
        assert word in r.stdout


# --- --serve: the same PID 1 serves cells to the container's agent -----------------------------

@pytest.mark.parametrize("mode", MODES)
def test_serve_runs_cells_and_ends_them_with_cmd(mode, tmp_path, marker):
    os.chmod(tmp_path, 0o755)
    sock = str(tmp_path / "corral.sock")
    with start_init(mode, ["--serve", sock, "--metrics", "127.0.0.1:0"],
                    [PAYLOAD, "sleep", "2", "+", "exit", "7"], tmp_path, marker) as init:
        wait_until(lambda: os.path.exists(sock), what="init to listen")
        env = dict(os.environ, CORRAL_SOCKET=sock)
        r = subprocess.run([CORRAL, "exec", "--json", "--", PAYLOAD, "setsid-escape", "60", "+",
                            "echo", "served"], capture_output=True, env=env, timeout=30)
        res = json.loads(r.stdout)
        assert res["stdout"] == "served\n" and res["exit_code"] == 0
        assert res["leftover"]["killed"] == 1
        cid = subprocess.run([CORRAL, "start", "--", PAYLOAD, "sleep", "60"], capture_output=True,
                             env=env, timeout=30).stdout.decode().strip()
        assert cid.startswith("d-")
        # CMD exits 7 after 2 s: the long cell ends with it and init exits with CMD's code.
        assert init.wait(30) == 7
    assert not os.path.exists(sock)
