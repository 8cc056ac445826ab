#!/usr/bin/python3
"""Latency of corral.run(['true']) against subprocess.run(['true']), in one invocation.

Both capture output (corral's default; capture_output=True for subprocess). Rounds alternate
which side goes first, so drift in the machine's load hits both alike. Prints p50, p90, p99 and
mean per call and the ratio corral / subprocess. Also the asyncio variant, and the same from
8 threads (calls/s).

Usage: bench/python_bench.py [--rounds N] [--per-round K] [--socket PATH]
  (without --socket it starts build/corral daemon on a temp socket and stops it at the end)
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))

import corral  # noqa: E402
import corral.aio  # noqa: E402

CORRAL = os.environ.get("CORRAL_BIN", str(ROOT / "build" / "corral"))


def start_daemon():
    d = tempfile.mkdtemp(prefix="corral-pybench-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "corral.sock")
    log = open(os.path.join(d, "log"), "w+b")
    proc = subprocess.Popen([CORRAL, "daemon", "--socket", sock, "--state-dir",
                             os.path.join(d, "state"), "--metrics", "127.0.0.1:0"], stderr=log)
    deadline = time.monotonic() + 10
    while not re.search(rb"serving on", Path(log.name).read_bytes()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("daemon did not start: " + Path(log.name).read_text())
        time.sleep(0.02)
    return proc, d, sock


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def line(name, xs, base=None):
    s = (f"{name:<34} p50 {pct(xs, 50) * 1e3:7.2f} ms  p90 {pct(xs, 90) * 1e3:7.2f} ms  "
         f"p99 {pct(xs, 99) * 1e3:7.2f} ms  mean {statistics.mean(xs) * 1e3:7.2f} ms")
    if base:
        s += f"  x{statistics.median(xs) / statistics.median(base):.2f} (p50 ratio)"
    print(s)


def throughput(fn, threads, per_thread):
    def worker():
        for _ in range(per_thread):
            fn()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return threads * per_thread / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=50)
    ap.add_argument("--socket")
    args = ap.parse_args()
    proc = tmp = None
    sock = args.socket
    if sock is None:
        proc, tmp, sock = start_daemon()
    try:
        sub = lambda: subprocess.run(["true"], capture_output=True)  # noqa: E731
        cor = lambda: corral.run(["true"], socket=sock)  # noqa: E731
        loop = asyncio.new_event_loop()
        aio = lambda: loop.run_until_complete(corral.aio.run(["true"], socket=sock))  # noqa
        for f in (sub, cor, aio):  # warm-up
            timed(f, 5)
        s_lat, c_lat, a_lat = [], [], []
        for r in range(args.rounds):
            order = [(sub, s_lat), (cor, c_lat), (aio, a_lat)]
            if r % 2:
                order.reverse()
            for fn, acc in order:
                acc += timed(fn, args.per_round)
        n = args.rounds * args.per_round
        print(f"{n} calls each, {args.rounds} interleaved rounds, Python "
              f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, daemon at {sock}")
        line("subprocess.run(['true'])", s_lat)
        line("corral.run(['true'])", c_lat, s_lat)
        line("corral.aio.run(['true'])", a_lat, s_lat)
        print(f"ratio corral.run / subprocess.run (p50): "
              f"{statistics.median(c_lat) / statistics.median(s_lat):.2f}")
        per = max(1, n // 8 // 2)
        st = throughput(sub, 8, per)
        ct = throughput(cor, 8, per)
        print(f"8 threads: subprocess.run {st:.0f} calls/s, corral.run {ct:.0f} calls/s "
              f"(x{ct / st:.2f})")
        loop.close()
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
