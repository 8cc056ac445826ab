"""`corral run --isolate` end to end: what a command inside an isolated cell can and cannot do,
checked by the command itself (tests/payload modes), and that the guarantees of DESIGN.md still
hold. Every assertion here would be false without isolation (some check that explicitly)."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import conftest
from conftest import corral, procs_with_env

# An isolated cell gets a private /tmp, so nothing under /tmp (where a CI checkout may live)
# exists inside it: every isolated run here starts from /var/tmp, and the binaries that run
# inside cells are copies there (removed at the end of the module).
ISO_CWD = "/var/tmp"
_BIN_DIR = tempfile.mkdtemp(prefix="corral-iso-bin-", dir="/var/tmp")
os.chmod(_BIN_DIR, 0o755)
CORRAL = shutil.copy2(conftest.CORRAL, os.path.join(_BIN_DIR, "corral"))
PAYLOAD = shutil.copy2(conftest.PAYLOAD, os.path.join(_BIN_DIR, "corral-payload"))


@pytest.fixture(scope="module", autouse=True)
def _remove_binary_copies():
    yield
    shutil.rmtree(_BIN_DIR, ignore_errors=True)


ISOLATE_OK = corral("run", "--isolate", "--", "/bin/true", cwd=ISO_CWD).returncode == 0
pytestmark = pytest.mark.skipif(not ISOLATE_OK,
                                reason="isolation unavailable here (see `corral doctor`)")


def iso(*args, marker=None, **kw):
    """Runs the payload in an isolated cell; returns (exit code, stdout lines)."""
    env = ["--env", f"CORRAL_TEST_MARK={marker}"] if marker else []
    kw.setdefault("cwd", ISO_CWD)
    r = corral("run", *env, *args, **kw)
    return r.returncode, r.stdout.decode().split("\n")[:-1], r.stderr.decode()


@pytest.fixture
def workdir():
    # Not under /tmp: /tmp is the cell's own tmpfs, so a path there cannot be granted.
    d = tempfile.mkdtemp(prefix="corral-iso-", dir="/var/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_writes_only_where_granted(workdir):
    os.mkdir(f"{workdir}/ro")
    os.mkdir(f"{workdir}/secret")
    with open(f"{workdir}/secret/key", "w") as f:
        f.write("k")
    with open(f"{workdir}/token", "w") as f:
        f.write("t")
    rc, out, err = iso("--isolate", "--rw", workdir, "--ro", f"{workdir}/ro", "--hide",
                       f"{workdir}/secret", "--hide", f"{workdir}/token", "--", PAYLOAD,
                       "write-file", f"{workdir}/granted", "+",
                       "write-file", f"{workdir}/ro/no", "+",
                       "write-file", "/var/tmp/corral-iso-outside", "+",
                       "write-file", "/etc/corral-iso-test", "+",
                       "write-file", f"{workdir}/secret/new", "+",
                       "print-env", "CORRAL_CELL")
    assert rc == 0, err
    assert out[:5] == ["write ok", "write EROFS", "write EROFS", "write EROFS", "write EROFS"]
    assert open(f"{workdir}/granted").read() == "x"
    assert not os.path.exists("/var/tmp/corral-iso-outside")
    assert not os.path.exists("/etc/corral-iso-test")
    # Hidden: an empty directory and an empty file inside; untouched outside.
    rc, out, _ = iso("--isolate", "--hide", f"{workdir}/secret", "--hide", f"{workdir}/token",
                     "--shell", f"ls -A {workdir}/secret | wc -l; wc -c < {workdir}/token")
    assert rc == 0 and out == ["0", "0"]
    assert open(f"{workdir}/secret/key").read() == "k"
    # Control: without isolation the same write goes through.
    rc, out, _ = iso("--", PAYLOAD, "write-file", f"{workdir}/ro/yes")
    assert out == ["write ok"]


def test_tmp_is_private_and_gone_after():
    name = f"corral-iso-{os.getpid()}-{time.monotonic_ns()}"
    host_file = f"/tmp/{name}-host"
    open(host_file, "w").close()
    try:
        rc, out, err = iso("--isolate", "--shell",
                           f"echo x > /tmp/{name} && cat /tmp/{name}; ls /tmp | wc -l; "
                           f"test -e {host_file} && echo sees-host || echo private")
        assert rc == 0, err
        assert out == ["x", "1", "private"]
        assert not os.path.exists(f"/tmp/{name}")
        # A second cell gets a fresh /tmp: the first one's file is gone with its namespace.
        rc, out, _ = iso("--isolate", "--shell", f"test -e /tmp/{name} && echo kept || echo gone")
        assert out == ["gone"]
    finally:
        os.unlink(host_file)


def test_no_route_beyond_loopback():
    start = time.monotonic()
    rc, out, err = iso("--isolate", "--", PAYLOAD, "net-ifaces", "+",
                       "connect-ip", "10.255.255.1", "80", "+",
                       "connect-ip", "1.1.1.1", "443", "+",
                       "connect-ip", "127.0.0.1", "1")
    assert rc == 0, err
    assert out == ["lo", "connect ENETUNREACH", "connect ENETUNREACH", "connect ECONNREFUSED"]
    assert time.monotonic() - start < 2  # refused at once, no connect timeout
    # --net host keeps the host's interfaces (the control: more than lo here).
    host_ifaces = open("/proc/net/dev").read().count(":")
    rc, out, _ = iso("--isolate", "--net", "host", "--", PAYLOAD, "net-ifaces")
    assert rc == 0 and len(out[0].split()) == host_ifaces


def test_sees_only_its_own_processes(marker):
    rc, out, err = iso("--isolate", "--", PAYLOAD, "print-pid", "+", "count-procs",
                       marker=marker)
    assert rc == 0, err
    assert out == ["1", "1"]  # the leader is PID 1 and alone
    rc, out, _ = iso("--isolate", "--", PAYLOAD, "tree", "3", "60", "+", "count-procs",
                     marker=marker)
    assert rc == 0 and out == ["4"]
    rc, out, _ = iso("--isolate", "--shell", "ps -e --no-headers | wc -l", marker=marker)
    assert rc == 0 and int(out[0]) <= 3  # sh, ps, wc
    assert procs_with_env(marker) == []


def test_ptrace_mount_and_namespaces_refused():
    rc, out, err = iso("--isolate", "--", PAYLOAD, "try-ptrace", "+", "try-mount", "+",
                       "try-unshare-user")
    assert rc == 0, err
    assert out == ["ptrace EPERM", "mount EPERM", "unshare EPERM"]
    rc, out, _ = iso("--", PAYLOAD, "try-ptrace")  # control: allowed outside
    assert out == ["ptrace ok"]


def test_no_capabilities_even_for_root():
    rc, out, _ = iso("--isolate", "--shell", "grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    assert rc == 0
    assert [line.split()[1] for line in out] == ["0000000000000000", "0000000000000000"]


def test_double_forked_daemon_dies_with_the_cell(marker):
    start = time.monotonic()
    rc, out, err = iso("--isolate", "--", PAYLOAD, "setsid-escape", "60", "+",
                       "fork-orphans", "4", "60", "+", "exit", "3", marker=marker)
    assert rc == 3, err
    assert time.monotonic() - start < 5
    assert procs_with_env(marker) == []


def test_exit_codes_timeouts_and_fds_hold(marker):
    assert iso("--isolate", "--", PAYLOAD, "exit", "42")[0] == 42
    assert iso("--isolate", "--shell", f"{PAYLOAD} kill-self 9; exit 7")[0] == 7
    assert iso("--isolate", "--", "/bin/sh", "-c", f"{PAYLOAD} kill-self 15 && :")[0] == 143
    assert iso("--isolate", "--", "/nonexistent/cmd")[0] == 127
    start = time.monotonic()
    r = corral("run", "--json", "--isolate", "--timeout", "300ms", "--grace", "200ms",
               "--env", f"CORRAL_TEST_MARK={marker}", "--", PAYLOAD,
               "setsid-escape", "60", "+", "sleep", "60", cwd=ISO_CWD)
    res = json.loads(r.stdout)
    assert r.returncode == 124 and res["state"] == "timed_out"
    assert time.monotonic() - start < 3
    assert procs_with_env(marker) == []
    rc, out, _ = iso("--isolate", "--", PAYLOAD, "list-fds")
    assert rc == 0 and out == ["0 1 2"]


def test_leader_is_pid_1_with_its_semantics():
    # Documented (docs/isolation.md): PID 1 of a namespace ignores signals it has no handler for,
    # its own SIGKILL included; a timeout still ends it (SIGKILL from the parent namespace).
    rc, out, _ = iso("--isolate", "--", PAYLOAD, "kill-self", "9", "+", "echo", "alive")
    assert rc == 0 and out == ["alive"]
    start = time.monotonic()
    r = corral("run", "--json", "--isolate", "--timeout", "200ms", "--grace", "300ms", "--",
               PAYLOAD, "sleep", "60", cwd=ISO_CWD)
    res = json.loads(r.stdout)
    assert r.returncode == 124 and res["signal"] == "SIGKILL"
    assert 0.5 <= time.monotonic() - start < 3  # SIGTERM ignored, SIGKILL after the grace
    # `corral init` in front restores ordinary semantics: SIGTERM ends the command at once.
    start = time.monotonic()
    r = corral("run", "--json", "--isolate", "--timeout", "200ms", "--grace", "5s", "--",
               CORRAL, "init", "--", PAYLOAD, "sleep", "60", cwd=ISO_CWD)
    assert r.returncode == 124 and time.monotonic() - start < 3


def test_caller_under_tmp_can_still_run_a_cell_elsewhere():
    # The private /tmp hides a caller's own directory under the host's /tmp (a daemon started
    # there, a checkout there): the cell's working directory is what must exist inside.
    here = tempfile.mkdtemp(prefix="corral-iso-caller-", dir="/tmp")
    try:
        rc, out, err = iso("--isolate", "--cwd", "/var/tmp", "--", "/bin/pwd", cwd=here)
        assert (rc, out) == (0, ["/var/tmp"]), err
    finally:
        os.rmdir(here)


def test_unavailable_or_wrong_part_fails_125_with_reason(workdir):
    rc, _, err = iso("--isolate", "--rw", "/nonexistent-corral-path", "--", "/bin/true")
    assert rc == 125 and "--rw" in err and "No such file" in err
    rc, _, err = iso("--isolate", "--rw", "/tmp/x", "--", "/bin/true")
    assert rc == 125 and "private tmpfs" in err
    rc, _, err = iso("--profile", "nope", "--", "/bin/true")
    assert rc == 125 and "readonly, workspace, network" in err
    rc, _, err = iso("--isolate", "--net", "wifi", "--", "/bin/true")
    assert rc == 125 and "--net" in err


def test_profiles(workdir):
    rc, out, _ = iso("--profile", "readonly", "--cwd", workdir, "--", PAYLOAD,
                     "write-file", "f", "+", "net-ifaces")
    assert out == ["write EROFS", "lo"]
    rc, out, _ = iso("--profile", "workspace", "--cwd", workdir, "--", PAYLOAD,
                     "write-file", "f", "+", "net-ifaces")
    assert out == ["write ok", "lo"]
    rc, out, _ = iso("--profile", "network", "--cwd", workdir, "--", PAYLOAD, "net-ifaces")
    assert len(out[0].split()) > 1
    # A profiles file adds its own, in the protocol's JSON form.
    path = f"{workdir}/profiles.json"
    with open(path, "w") as f:
        json.dump({"profiles": {"scratch": {"rw": [f"{workdir}/out"], "net": "none"}}}, f)
    os.mkdir(f"{workdir}/out")
    rc, out, err = iso("--profile", "scratch", "--cwd", workdir, "--", PAYLOAD,
                       "write-file", "out/a", "+", "write-file", "b",
                       env={"CORRAL_PROFILES": path})
    assert rc == 0, err
    assert out == ["write ok", "write EROFS"]


def test_unprivileged_caller_gets_isolation_without_privileges(workdir):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to become nobody")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CORRAL, "run",
           "--containment", "pgroup", "--isolate", "--rw", workdir, "--", PAYLOAD,
           "print-ids", "+", "write-file", f"{workdir}/mine", "+", "write-file",
           "/var/tmp/corral-iso-nobody", "+", "try-ptrace", "+", "try-mount", "+", "print-pid"]
    r = subprocess.run(cmd, capture_output=True, timeout=30, cwd="/")
    if r.returncode == 125 and b"user namespace" in r.stderr:
        pytest.skip(r.stderr.decode().strip())
    out = r.stdout.decode().split("\n")[:-1]
    assert r.returncode == 0, r.stderr
    assert out[0].startswith("65534 65534")
    assert out[1:] == ["write ok", "write EROFS", "ptrace EPERM", "mount EPERM", "1"]
    assert os.stat(f"{workdir}/mine").st_uid == 65534


def test_doctor_lists_isolation_parts():
    r = corral("doctor")
    out = r.stdout.decode()
    assert r.returncode == 0
    for part in ("pid namespace", "network namespace", "read-only root", "seccomp filter",
                 "landlock"):
        assert part in out
