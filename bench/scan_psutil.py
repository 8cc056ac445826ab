"""The host-scan report of `corral scan --json` computed with psutil (Debian python3-psutil), as
the baseline of bench/scan_bench.py: zombies grouped by parent with the parent's cmdline, D-state
processes with wchan, processes near RLIMIT_NOFILE, PID use. Prints the JSON and the time the
scan itself took (interpreter start-up excluded) on stderr."""
import json
import sys
import time

import psutil

t0 = time.monotonic()
by_parent = {}
dstate = []
fd_pressure = []
n = 0
now = time.time()
for p in psutil.process_iter(["pid", "ppid", "name", "status", "create_time"]):
    n += 1
    info = p.info
    st = info["status"]
    if st == psutil.STATUS_ZOMBIE:
        agg = by_parent.setdefault(info["ppid"], {"zombies": 0, "oldest": now})
        agg["zombies"] += 1
        agg["oldest"] = min(agg["oldest"], info["create_time"] or now)
        continue
    if st == psutil.STATUS_DISK_SLEEP:
        try:
            with open(f"/proc/{info['pid']}/wchan") as f:
                wchan = f.read()
        except OSError:
            wchan = ""
        dstate.append({"pid": info["pid"], "comm": info["name"], "wchan": wchan})
        continue
    try:
        fds = p.num_fds()
        if fds >= 32:
            soft, hard = p.rlimit(psutil.RLIMIT_NOFILE)
            if soft > 0 and fds >= 0.8 * soft:
                fd_pressure.append({"pid": info["pid"], "open_fds": fds, "soft_limit": soft})
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
zp = []
for ppid, agg in sorted(by_parent.items(), key=lambda kv: -kv[1]["zombies"])[:20]:
    try:
        parent = psutil.Process(ppid)
        comm, cmdline = parent.name(), " ".join(parent.cmdline())
    except psutil.Error:
        comm, cmdline = "", ""
    zp.append({"pid": ppid, "comm": comm, "cmdline": cmdline, "zombies": agg["zombies"],
               "oldest_s": now - agg["oldest"]})
with open("/proc/sys/kernel/pid_max") as f:
    pid_max = int(f.read())
report = {"zombies_by_parent": zp, "dstate": dstate, "fd_pressure": fd_pressure,
          "pids": {"used": sum(1 for _ in psutil.pids()), "max": pid_max}, "processes": n}
elapsed = time.monotonic() - t0
print(json.dumps(report))
print(f"{elapsed:.6f}", file=sys.stderr)
