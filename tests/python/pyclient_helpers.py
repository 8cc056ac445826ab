"""Helpers and fixtures for the Python client's tests, imported by the test modules: a real
`corral daemon` (build/corral) on a temp socket, the real client from clients/python, real
processes. The daemon starter (Daemon) comes from tests/daemonutil.py, shared with
tests/integration, the /proc helpers from tests/procutil.py. There is no conftest.py here, so both
suites can run in one pytest invocation (`from conftest import` stays theirs). Every test ends by
checking that no process carrying its marker is alive and that neither this process nor
the daemon has a zombie child."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "tests"))
from procutil import procs_with_env, wait_until, zombie_children  # noqa: E402,F401
from daemonutil import CORRAL, PAYLOAD, Daemon  # noqa: E402,F401


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def daemon():
    if not os.path.exists(CORRAL) or not os.path.exists(PAYLOAD):
        pytest.skip(f"build first: {CORRAL} / {PAYLOAD} missing (scripts/build.sh)")
    d = Daemon()
    yield d
    d.stop()
    assert d.proc.returncode == 0, d.text()
    assert not os.path.exists(d.sock)


@pytest.fixture
def sock(daemon):
    """The daemon's socket; after the test, the daemon has no zombie child."""
    yield daemon.sock
    wait_until(lambda: not zombie_children(daemon.proc.pid), timeout=5,
               what=f"daemon's zombie children to be reaped: {zombie_children(daemon.proc.pid)}")


@pytest.fixture
def marker():
    """A unique environment marker: pass it to commands (env CORRAL_TEST_MARK=...) so the test
    can find every process of theirs, and assert at the end that none is left."""
    mark = f"corral-pytest-{os.getpid()}-{time.monotonic_ns()}"
    yield mark
    left = procs_with_env(mark)
    kill_pids(left)  # clean up our own processes, by pid, then fail the test
    assert not left, f"processes left behind by the test: {left}"


@pytest.fixture(autouse=True)
def no_zombie_children():
    yield
    zs = zombie_children(os.getpid())
    assert not zs, f"zombie children of the test process: {zs}"
