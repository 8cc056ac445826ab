#!/usr/bin/python3
"""Soak: N calls (default 1,000,000) of `run /bin/true` through one daemon from 8 clients,
sampling the daemon's fd count and RSS every 10,000 calls. Passes when both stay flat (fds
within the in-flight calls' fds, RSS within 2 MiB of the first sample after warm-up) and the daemon has no zombie
child at the end. Not part of CI: about 20 minutes per million calls on the 2-core VM.

Usage: bench/daemon_soak.py [--calls N] [--clients C]"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_bench import Conn, fds, rss_kib, start_daemon  # noqa: E402


def zombies_of(pid):
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                rest = Path(f"/proc/{d}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if rest[0] == b"Z" and int(rest[1]) == pid:
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="corral-soak-")
    daemon, sock = start_daemon(tmp)
    done = [0]
    lock = threading.Lock()
    samples = []

    def worker(n):
        c = Conn(sock)
        for _ in range(n):
            r = c.call("run", {"argv": ["/bin/true"]})
            assert r["result"]["exit_code"] == 0, r
            with lock:
                done[0] += 1
                if done[0] % 10_000 == 0:
                    samples.append((done[0], fds(daemon.pid), rss_kib(daemon.pid)))
                    print(f"{done[0]:>9} calls  fds {samples[-1][1]}  rss {samples[-1][2]} KiB",
                          flush=True)

    try:
        per = a.calls // a.clients
        ts = [threading.Thread(target=worker, args=(per,)) for _ in range(a.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        z = zombies_of(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    warm = samples[min(2, len(samples) - 1):] if samples else []
    # Samples are taken while other clients are mid-call: allow their in-flight cells' fds.
    fd_flat = not warm or max(s[1] for s in warm) - min(s[1] for s in warm) <= a.clients * 8
    rss_flat = not warm or max(s[2] for s in warm) - warm[0][2] < 2048
    print(f"zombies {z}; fds flat: {fd_flat}; rss flat: {rss_flat}")
    sys.exit(0 if (z == 0 and fd_flat and rss_flat) else 1)


if __name__ == "__main__":
    main()
