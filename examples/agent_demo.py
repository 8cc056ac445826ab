#!/usr/bin/env python3
"""Side by side: an "agent" whose shell tool runs misbehaving commands from 30 threads, once with
subprocess.run(timeout=...) and once with corral.run, and what each leaves behind.

    python3 examples/agent_demo.py              # starts its own daemon (build/corral), stops it
    python3 examples/agent_demo.py --socket S   # uses a running daemon

The 30 tool calls, all at once (a thread each):
  10 x hung command whose grandchild escaped:  setsid sleep 300 & sleep 300      (timeout 1 s)
  10 x command that leaves background children: sleep 300 & (sleep 0.2 &); echo started
                                                                                 (timeout 1 s)
  10 x output flood:                           yes | head -c 32M                 (no timeout)

Each half runs in a fresh agent process, made a child subreaper (PR_SET_CHILD_SUBREAPER): that
is what an agent gateway is when it runs as its container's PID 1, as in DESIGN.md's incidents,
so orphaned processes come back to it. After the last call returns and a 0.5 s settle, the agent
counts: zombie children it has (nobody waits for orphans that came back), processes of its calls
still alive (found by an environment marker), the fds those survivors hold, its own fd delta and
peak memory, and the wall time of the 30 calls. Then it cleans up what it leaked, by pid: this
is a demo, not a leak.
"""

import argparse
import concurrent.futures
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import corral  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
SETTLE_S = 0.5

CALLS = (
    [("escaping grandchild", "setsid sleep 300 & sleep 300", 1.0)] * 10
    + [("background children", "sleep 300 & (sleep 0.2 &); echo started", 1.0)] * 10
    + [("output flood", "yes | head -c 32M", None)] * 10
)


# ---------------------------------------------------------------------------------------------
# What the agent measures about itself


def procs_with_env(marker):
    """Live (non-zombie) processes whose environment holds marker."""
    found = []
    needle = marker.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2:][:1] == b"Z":
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read():
                    found.append(int(d))
        except OSError:
            continue
    return found


def zombie_children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        if rest[0] == b"Z" and int(rest[1]) == ppid:
            out.append(int(d))
    return out


def fds_of(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cleanup(marker, deadline_s=10.0):
    """Kills what the calls left running and reaps every child of this agent, by pid."""
    for pid in procs_with_env(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # no child left at all
        if pid == 0:
            if not procs_with_env(marker):
                if not zombie_children(os.getpid()):
                    break
            time.sleep(0.01)
    return procs_with_env(marker)


# ---------------------------------------------------------------------------------------------
# One half: the agent process


def tool_call_subprocess(cmd, timeout, env):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, timeout=timeout, env=env)
        return "ok", len(r.stdout)
    except subprocess.TimeoutExpired:
        return "timeout", 0


def tool_call_corral(cmd, timeout, env, sock):
    try:
        r = corral.run(cmd, shell=True, capture_output=True, timeout=timeout, env=env,
                       socket=sock)
        return "ok", len(r.stdout)
    except subprocess.TimeoutExpired:
        return "timeout", 0


def agent(half, sock, marker):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    env = dict(os.environ, AGENT_DEMO_MARK=marker)
    fds_before = fds_of(os.getpid())
    outcomes = {}
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(CALLS)) as pool:
        futures = []
        for kind, cmd, timeout in CALLS:
            if half == "subprocess":
                fut = pool.submit(tool_call_subprocess, cmd, timeout, env)
            else:
                fut = pool.submit(tool_call_corral, cmd, timeout, env, sock)
            futures.append((kind, fut))
        for kind, fut in futures:
            what, _ = fut.result()
            outcomes.setdefault(kind, {}).setdefault(what, 0)
            outcomes[kind][what] += 1
    wall = time.monotonic() - start
    time.sleep(SETTLE_S)  # the measurement window: orphans that exit by now become zombies
    alive = procs_with_env(marker)
    report = {
        "zombies": len(zombie_children(os.getpid())),
        "escaped": len(alive),
        "escaped_fds": sum(fds_of(p) for p in alive),
        "agent_fds": fds_of(os.getpid()) - fds_before,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": wall,
        "outcomes": outcomes,
    }
    report["left_after_cleanup"] = len(cleanup(marker))
    print(json.dumps(report))


# ---------------------------------------------------------------------------------------------
# The driver: a daemon if none was given, both halves, the table


class OwnDaemon:
    """build/corral daemon on a temp socket, stopped with SIGTERM at the end."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="corral-demo-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "corral.sock")
        self.log_path = os.path.join(self.dir, "log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "daemon", "--socket", self.sock, "--state-dir",
                 os.path.join(self.dir, "state"), "--metrics", "127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while not re.search(rb"serving on", open(self.log_path, "rb").read()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("corral daemon did not start:\n" +
                                 open(self.log_path, errors="replace").read())
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_half(half, sock):
    marker = f"agent-demo-{os.getpid()}-{half}-{time.monotonic_ns()}"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--half", half,
                          "--socket", sock, "--marker", marker],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"the {half} half failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe(outcomes):
    parts = []
    for kind, counts in outcomes.items():
        parts.append(f"{kind}: " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))
    return "; ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", help="a running corral daemon's socket (default: start one)")
    ap.add_argument("--corral", default=os.path.join(ROOT, "build", "corral"),
                    help="the corral binary used to start a daemon (default: build/corral)")
    ap.add_argument("--json", action="store_true",
                    help="print both halves' measurements as one JSON object instead")
    ap.add_argument("--half", choices=["subprocess", "corral"], help=argparse.SUPPRESS)
    ap.add_argument("--marker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.half:
        agent(args.half, args.socket, args.marker)
        return

    daemon = None
    sock = args.socket
    if sock is None:
        if not os.access(args.corral, os.X_OK):
            raise SystemExit(f"{args.corral} not found: build corral first (scripts/build.sh) "
                             f"or pass --socket of a running daemon")
        daemon = OwnDaemon(args.corral)
        sock = daemon.sock
    try:
        if args.json:
            print(json.dumps({"subprocess": run_half("subprocess", sock),
                              "corral": run_half("corral", sock)}))
            return
        print(f"30 agent tool calls at once, in 30 threads ({len(CALLS) // 3} hung with an "
              f"escaping grandchild, {len(CALLS) // 3} leaving background children, "
              f"{len(CALLS) // 3} flooding output);\nthe agent is a child subreaper, as a "
              f"container's PID 1 is. Measured {SETTLE_S} s after the last call returned.\n")
        t0 = time.monotonic()
        sub = run_half("subprocess", sock)
        cor = run_half("corral", sock)
        rows = [
            ("zombies left in the agent", "zombies", "{:d}"),
            ("escaped processes still alive", "escaped", "{:d}"),
            ("fds held by those processes", "escaped_fds", "{:d}"),
            ("fds leaked in the agent", "agent_fds", "{:d}"),
            ("agent peak memory (MiB)", "peak_mib", "{:.0f}"),
            ("wall time of the 30 calls (s)", "wall_s", "{:.2f}"),
        ]
        w = max(len(r[0]) for r in rows)
        print(f"{'':{w}}  {'subprocess.run':>15}  {'corral.run':>11}")
        print(f"{'-' * w}  {'-' * 15}  {'-' * 11}")
        for label, key, fmt in rows:
            print(f"{label:{w}}  {fmt.format(sub[key]):>15}  {fmt.format(cor[key]):>11}")
        print()
        print("what the agent saw:")
        print(f"  subprocess.run: {describe(sub['outcomes'])}")
        print(f"  corral.run:     {describe(cor['outcomes'])}")
        print("  (subprocess.run times out on 'echo started' because the background sleep "
              "holds its pipe; corral\n   returns at once and kills the leftovers; floods are "
              "capped at 1 MiB per stream, with a flag.)")
        left = sub["left_after_cleanup"] + cor["left_after_cleanup"]
        print(f"\ncleaned up after the subprocess.run half: {sub['escaped']} processes killed "
              f"and {sub['zombies']} zombies reaped by pid ({left} left). "
              f"Total {time.monotonic() - t0:.1f} s.")
        if left:
            sys.exit(1)
    finally:
        if daemon:
            daemon.stop()


if __name__ == "__main__":
    main()
