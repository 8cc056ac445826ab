#!/usr/bin/python3
"""corral daemon throughput and memory, against baselines run in the same invocation.

  1. calls/s and p50/p99 latency of `run` for /bin/true with 1, 8 and 64 concurrent clients
  2. the in-process cell API on the same machine (build/corral-bench --cell-rate=N)
  3. Python subprocess.run(['/bin/true'], timeout=30) from 8 threads
  4. daemon RSS per running cell with N concurrent sleeping cells (default 2000)

Usage: bench/daemon_bench.py [--calls N] [--cells N]   (root; uses build/corral)
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORRAL = os.environ.get("CORRAL_BIN", str(ROOT / "build" / "corral"))
BENCH = str(ROOT / "build" / "corral-bench")


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def call(self, method, params):
        self.f.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": params}) + "\n").encode())
        self.f.flush()
        return json.loads(self.f.readline())


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_daemon(tmp, extra=()):
    sock = os.path.join(tmp, "bench.sock")
    p = subprocess.Popen([CORRAL, "daemon", "--socket", sock, "--state-dir",
                          os.path.join(tmp, "state"), "--metrics", "off", "--scan-interval", "0",
                          *extra], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            raise SystemExit("daemon did not start")
        time.sleep(0.01)
    return p, sock


def run_clients(sock, clients, total, extra=None):
    per = max(1, total // clients)
    lat = []
    lock = threading.Lock()

    def worker():
        c = Conn(sock)
        mine = []
        for _ in range(per):
            t0 = time.perf_counter()
            r = c.call("run", {"argv": ["/bin/true"], **(extra or {})})
            mine.append(time.perf_counter() - t0)
            assert r["result"]["exit_code"] == 0, r
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return len(lat) / wall, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3


def subprocess_rate(threads, total):
    per = total // threads

    def worker():
        for _ in range(per):
            subprocess.run(["/bin/true"], timeout=30)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--cells", type=int, default=2000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="corral-bench-")
    daemon, sock = start_daemon(tmp, ["--max-running", str(max(64, a.cells + 10))])
    try:
        inproc = float(re.search(rb"cells_per_s ([0-9.]+)", subprocess.run(
            [BENCH, f"--cell-rate={a.calls}"], capture_output=True).stdout).group(1))
        print(f"{'what':44} | {'calls/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | vs in-process")
        print("-" * 90)
        print(f"{'in-process cell API (sequential)':44} | {inproc:9.0f} | {'':7} | {'':7} | 1.00x")
        for n in (1, 8, 64):
            rate, p50, p99 = run_clients(sock, n, a.calls)
            print(f"{'daemon run, %d client(s)' % n:44} | {rate:9.0f} | {p50:7.2f} | {p99:7.2f} "
                  f"| {rate / inproc:.2f}x")
        # Isolated against plain at steady state: long alternating phases on one client (the
        # namespaces' teardown, done by kernel workers, spills over only at phase boundaries), so
        # that drift of this noisy host hits both alike; the ratio is of the summed phase times.
        rounds, t_plain, t_iso, iso_lat = 4, 0.0, 0.0, []
        per = max(1, a.calls // (2 * rounds))
        for _ in range(rounds):
            plain, _, _ = run_clients(sock, 1, per)
            iso, ip50, _ = run_clients(sock, 1, per, {"isolate": True})
            t_plain += per / plain
            t_iso += per / iso
            iso_lat.append(ip50)
        iso_lat.sort()
        print(f"{'daemon run --isolate, 1 client':44} | {rounds * per / t_iso:9.0f} | "
              f"{iso_lat[rounds // 2]:7.2f} | {'':7} | {t_iso / t_plain:.2f}x the time of a plain "
              f"daemon run ({rounds} alternating phases of {per} calls each)")
        sp = subprocess_rate(8, a.calls)
        print(f"{'python subprocess.run, 8 threads':44} | {sp:9.0f} | {'':7} | {'':7} "
              f"| {sp / inproc:.2f}x")

        # Memory per running cell.
        base_rss, base_fds = rss_kib(daemon.pid), fds(daemon.pid)
        c = Conn(sock)
        ids = []
        for _ in range(a.cells):
            r = c.call("start", {"argv": ["/bin/sleep", "600"]})
            if "error" in r:
                print("start refused:", r["error"]["message"])
                break
            ids.append(r["result"]["id"])
        time.sleep(0.5)
        rss, nfds = rss_kib(daemon.pid), fds(daemon.pid)
        per_cell = (rss - base_rss) / max(1, len(ids))
        print(f"\n{len(ids)} sleeping cells: daemon RSS {base_rss} -> {rss} KiB = "
              f"{per_cell:.1f} KiB per cell; fds {base_fds} -> {nfds} "
              f"({(nfds - base_fds) / max(1, len(ids)):.1f} per cell)")
        for cid in ids:
            c.call("kill", {"id": cid})
        for cid in ids:
            c.call("wait", {"id": cid})
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
