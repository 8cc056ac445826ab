"""Helpers and fixtures for the Python client's tests, imported by the test modules: a real
`corral daemon` (build/corral) on a temp socket, the real client from clients/python, real
processes. The /proc helpers come from tests/procutil.py. There is no conftest.py here, so
both suites can run in one pytest invocation (`from conftest import` stays theirs). Every test
ends by checking that no process carrying its marker is alive and that neither this process nor
the daemon has a zombie child."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORRAL = os.environ.get("CORRAL_BIN", str(ROOT / "build" / "corral"))
PAYLOAD = os.environ.get("CORRAL_PAYLOAD", str(ROOT / "build" / "corral-payload"))
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "tests"))
from procutil import procs_with_env, wait_until, zombie_children  # noqa: E402,F401


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Daemon:
    """A real `corral daemon` on its own socket and state dir (as tests/integration/
    test_daemon.py starts it)."""

    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="corral-pyclient-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "corral.sock")
        self.state = os.path.join(self.dir, "state")
        self.log = open(os.path.join(self.dir, "log"), "w+b")
        self.proc = subprocess.Popen(
            [CORRAL, "daemon", "--socket", self.sock, "--state-dir", self.state,
             "--metrics", "127.0.0.1:0", "--scan-interval", "300ms", *extra],
            stderr=self.log)
        wait_until(self._serving, what="daemon to start")

    def _serving(self):
        assert self.proc.poll() is None, self.text()
        return re.search(rb"serving on", Path(self.log.name).read_bytes())

    def text(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


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
