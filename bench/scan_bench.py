#!/usr/bin/python3
"""Benchmark: `corral scan --json` against the same report computed with psutil
(bench/scan_psutil.py) and against `ps -eo pid,ppid,stat,wchan,cmd`, with 0, 1,000 and 10,000
extra sleeping processes, all in one invocation; prints times and ratios, then system calls per
process counted with `strace -f -c` (when strace is installed).

  python3 bench/scan_bench.py [--counts 0,1000,10000] [--runs 5]

The sleepers are children of one corral-payload (`tree N 600 + sleep 600`); the bench makes
itself a child subreaper, kills every sleeper by pid when a size is done, and reaps them all."""
import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORRAL = os.environ.get("CORRAL_BIN", str(ROOT / "build" / "corral"))
PAYLOAD = os.environ.get("CORRAL_PAYLOAD", str(ROOT / "build" / "corral-payload"))
PSUTIL = str(ROOT / "bench" / "scan_psutil.py")
PR_SET_CHILD_SUBREAPER = 36


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
        except OSError:
            continue
        if int(s[s.rfind(b")") + 2:].split()[1]) == ppid:
            out.append(int(d))
    return out


def start_sleepers(n):
    if n == 0:
        return None, []
    p = subprocess.Popen([PAYLOAD, "tree", str(n), "600", "+", "sleep", "600"])
    deadline = time.monotonic() + 120
    while True:
        kids = children_of(p.pid)
        if len(kids) >= n:
            return p, kids
        if time.monotonic() > deadline:
            stop_sleepers(p, kids)
            raise SystemExit(f"only {len(kids)} of {n} sleepers started")
        time.sleep(0.2)


def stop_sleepers(p, kids):
    for pid in kids:  # ours, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if p is not None:
        p.kill()
        p.wait()
    # As subreaper we inherit the killed sleepers once their parent is gone: reap them all.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def timed(argv, runs, stderr_time=False):
    walls, inner = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        walls.append(time.monotonic() - t0)
        if r.returncode not in (0, 1):
            raise SystemExit(f"{argv[0]} failed: {r.stderr.decode()}")
        if stderr_time:
            inner.append(float(r.stderr.decode().split()[-1]))
        elif argv[0] == CORRAL:
            inner.append(json.loads(r.stdout)["duration_s"])
    return statistics.median(walls), (statistics.median(inner) if inner else None)


def syscalls(argv, processes):
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        subprocess.run(["strace", "-f", "-c", "-o", f.name, *argv], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        total = 0
        for line in f.read().splitlines():
            parts = line.split()
            if parts and parts[-1] == "total":
                total = int(parts[3]) if len(parts) >= 5 else int(parts[2])
        return total / max(processes, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="0,1000,10000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    corral = [CORRAL, "scan", "--json", "--no-gpu"]
    psutil_cmd = ["/usr/bin/python3", PSUTIL]
    ps = ["ps", "-eo", "pid,ppid,stat,wchan,cmd"]
    rows = []
    for n in [int(x) for x in args.counts.split(",")]:
        p, kids = start_sleepers(n)
        try:
            procs = sum(1 for d in os.listdir("/proc") if d.isdigit())
            c_wall, c_inner = timed(corral, args.runs)
            p_wall, p_inner = timed(psutil_cmd, args.runs, stderr_time=True)
            s_wall, _ = timed(ps, args.runs)
            sc_corral = syscalls(corral, procs)
            sc_psutil = syscalls(psutil_cmd, procs)
            sc_ps = syscalls(ps, procs)
            rows.append((n, procs, c_wall, c_inner, p_wall, p_inner, s_wall, sc_corral,
                         sc_psutil, sc_ps))
        finally:
            stop_sleepers(p, kids)

    print(f"\ncorral scan benchmark (median of {args.runs} runs; wall = whole command incl. "
          f"exec/interpreter start, scan = the scan alone)\n")
    hdr = (f"{'extra':>6} {'procs':>6} | {'corral wall':>11} {'corral scan':>11} | "
           f"{'psutil wall':>11} {'psutil scan':>11} | {'ps wall':>9} | "
           f"{'psutil/corral':>13} {'(scan only)':>11} {'ps/corral':>9}")
    print(hdr)
    print("-" * len(hdr))
    for n, procs, cw, ci, pw, pi, sw, *_ in rows:
        print(f"{n:>6} {procs:>6} | {cw*1e3:>9.1f}ms {ci*1e3:>9.1f}ms | {pw*1e3:>9.1f}ms "
              f"{pi*1e3:>9.1f}ms | {sw*1e3:>7.1f}ms | {pw/cw:>12.1f}x {pi/ci:>10.1f}x "
              f"{sw/cw:>8.1f}x")
    if shutil.which("strace"):
        print("\nsystem calls per process in /proc (strace -f -c, whole command)")
        print(f"{'extra':>6} {'procs':>6} | {'corral':>8} {'psutil':>8} {'ps':>8}")
        for n, procs, *_, a, b, c in rows:
            print(f"{n:>6} {procs:>6} | {a:>8.1f} {b:>8.1f} {c:>8.1f}")
    else:
        print("\n(strace not installed: no system call counts)")


if __name__ == "__main__":
    sys.exit(main())
