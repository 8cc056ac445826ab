"""The one way the tests start a real `corral daemon`: tests/integration (through its conftest.py)
and tests/python both import this module, as they do procutil.py.

Daemon() runs CORRAL (build/corral, or $CORRAL_BIN: scripts/test.sh points it at the sanitizer
build for its second pass) on a socket and state dir of its own in a temp dir, with metrics on a
free loopback port, and returns once the daemon says it is serving. stop() sends SIGTERM, waits
(SIGKILL and raise after 20 s), and removes the temp dir; the caller asserts on returncode.

SANITIZER is set when $CORRAL_SANITIZER names the instrumentation of CORRAL ("address"): a test
whose bound only holds for a normal build (resident memory, under ASan's quarantine and shadow)
skips itself with pytest.mark.skipif(SANITIZER, reason=...)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from procutil import wait_until

ROOT = Path(__file__).resolve().parents[1]
CORRAL = os.environ.get("CORRAL_BIN", str(ROOT / "build" / "corral"))
PAYLOAD = os.environ.get("CORRAL_PAYLOAD", str(ROOT / "build" / "corral-payload"))
SANITIZER = os.environ.get("CORRAL_SANITIZER", "")


class Daemon:
    def __init__(self, extra=(), state_dir=None, prefix=(), preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="corral-daemon-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "corral.sock")
        self.state = state_dir or os.path.join(self.dir, "state")
        self.log = open(os.path.join(self.dir, "log"), "w+b")
        self.proc = subprocess.Popen(
            [*prefix, CORRAL, "daemon", "--socket", self.sock, "--state-dir", self.state,
             "--metrics", "127.0.0.1:0", "--scan-interval", "300ms", *extra],
            stderr=self.log, preexec_fn=preexec_fn)
        self.metrics = wait_until(self._metrics_addr, what="daemon to start")

    def _metrics_addr(self):
        assert self.proc.poll() is None, self.text()
        # One line says both: "serving on SOCKET (... metrics http://ADDR/metrics ...)".
        m = re.search(rb"serving on .* metrics http://([0-9.:]+)/metrics",
                      Path(self.log.name).read_bytes())
        return m and m.group(1).decode()

    def text(self):
        if self.proc.returncode is not None and not os.path.exists(self.log.name):
            return self.final_log  # after stop(): what the daemon wrote, kept for messages
        return Path(self.log.name).read_text(errors="replace")

    def client(self):
        return Client(self.sock)

    def call(self, method, params=None):
        with self.client() as c:
            return c.call(method, params)

    def scrape(self):
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.final_log = Path(self.log.name).read_text(errors="replace")
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """A raw JSON-RPC client on the daemon's socket: one line out, one line in."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.n = 0

    def send_raw(self, data):
        self.s.sendall(data)

    def read(self):
        line = self.f.readline()
        return json.loads(line) if line else None

    def call(self, method, params=None):
        self.n += 1
        msg = {"jsonrpc": "2.0", "id": self.n, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_raw((json.dumps(msg) + "\n").encode())
        return self.read()

    def close(self):
        self.f.close()
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
