"""Shared fixtures for the integration tests: they run the real build/corral binary against real
processes. Every test ends by checking that it left nothing behind: no zombie child of this test
process, no process that carries this test's marker in its environment."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from procutil import (ignored_signals, links, parent_of, proc_state,  # noqa: E402,F401
                      procs_with_env, wait_until, zombie_children)
from daemonutil import (CORRAL, PAYLOAD, ROOT, SANITIZER, Client,  # noqa: E402,F401
                        Daemon)


@pytest.fixture
def marker(request):
    """A unique environment marker: pass it to commands (env CORRAL_TEST_MARK=...) so the test
    can find every process of theirs, and assert at the end that none is left."""
    mark = f"corral-test-{os.getpid()}-{time.monotonic_ns()}"
    yield mark
    left = procs_with_env(mark)
    for pid in left:  # clean up our own processes, by pid, then fail the test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind by the test: {left}"


@pytest.fixture
def daemon():
    """A real daemon per test (tests/daemonutil.py); after the test it must stop on SIGTERM with
    exit 0 and remove its socket."""
    d = Daemon()
    yield d
    d.stop()
    assert d.proc.returncode == 0, d.text()
    assert not os.path.exists(d.sock)


@pytest.fixture(autouse=True)
def no_zombie_children():
    yield
    # Give the kernel a moment to deliver exits of children this test already reaped.
    zs = zombie_children(os.getpid())
    assert not zs, f"zombie children of the test process: {zs}"


def corral(*args, env=None, timeout=60, input=None, check=False, cwd=None):
    """Runs build/corral with args; returns the CompletedProcess (bytes)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([CORRAL, *args], capture_output=True, timeout=timeout, env=e,
                          input=input, check=check, cwd=cwd)


def prometheus_query_until(target, query, check, timeout=60):
    """Starts a real Prometheus (Debian's `prometheus`) on loopback scraping `target` every
    second, polls its HTTP API with `query` until check(result) is true, returns the result, and
    always stops it (by pid) and removes its files."""
    import json as _json
    import shutil
    import socket as _socket
    import tempfile
    import urllib.parse
    import urllib.request
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    d = tempfile.mkdtemp(prefix="corral-prom-")
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prom = None
    try:
        Path(d, "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: corral\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(f"{d}/log", "wb"))
        url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"

        def result():
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    res = _json.loads(r.read())["data"]["result"]
            except OSError:
                return None
            return res if res and check(res) else None

        return wait_until(result, timeout=timeout, interval=0.5, what="Prometheus to scrape")
    finally:
        if prom is not None:
            prom.send_signal(signal.SIGTERM)
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        shutil.rmtree(d, ignore_errors=True)
