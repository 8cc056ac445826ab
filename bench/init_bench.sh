#!/usr/bin/env bash
# corral init against tini and dumb-init (Debian packages), measured side by side in one run:
#  1. start-to-exit of `INIT -- /bin/true` (hyperfine), as a ratio to tini's;
#  2. reap latency: as PID 1 of a fresh PID namespace, the init's child makes 1,000 orphans that
#     exit at once and measures how long after the last one is created the init has reaped them
#     all (bench/init_orphans.c), against tini, dumb-init and a bare signalfd + waitid loop
#     (bench/init_reaper.c), each built here with cc into a temp dir.
#     Also a baseline whose child leads its own session (`init_reaper -s`), as corral init's and
#     dumb-init's do: where kernel.sched_autogroup_enabled is 1, a new session is a new scheduling
#     group, so during the storm the init gets half the CPU and wakes for every few exits instead
#     of once at the end; that, not the reaping loop, is what separates the rows.
#     Autogroups apply only to tasks in the root cpu cgroup: in a container (its own cpu cgroup,
#     where corral init runs as PID 1) they play no part. CONTAINER=1 runs every init of the reap
#     part in a cpu cgroup of its own, as a container runtime would (the default; CONTAINER=0 runs
#     them in the caller's cgroup).
# Usage: bench/init_bench.sh [ROUNDS]   (env: CORRAL_BIN, default build/corral; CONTAINER=0|1 (above);
# AUTOGROUP=0|1 sets kernel.sched_autogroup_enabled for the reap part and restores it; needs root
# for unshare --pid --mount-proc)
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL=${CORRAL_BIN:-$PWD/build/corral}
ROUNDS=${1:-15}
ORPHANS=1000
for tool in hyperfine tini dumb-init unshare cc python3; do
  command -v "$tool" >/dev/null || { echo "init_bench: $tool is missing" >&2; exit 1; }
done
[ -x "$CORRAL" ] || { echo "init_bench: build corral first ($CORRAL)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/init_reaper" bench/init_reaper.c
cc -O2 -o "$tmp/init_orphans" bench/init_orphans.c

echo "== start-to-exit: INIT -- /bin/true (hyperfine, $(nproc) cores) =="
hyperfine -N --warmup 50 --runs 500 --export-json "$tmp/start.json" \
  -n true '/bin/true' \
  -n tini 'tini -- /bin/true' \
  -n tini-s 'tini -s -- /bin/true' \
  -n dumb-init 'dumb-init /bin/true' \
  -n corral "$CORRAL init -- /bin/true" >/dev/null
python3 - "$tmp/start.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["true"]["median"]
print(f"{'command':<12}{'median ms':>10}{'mean ms':>10}{'over /bin/true':>16}")
for k in ["true", "tini", "tini-s", "dumb-init", "corral"]:
    x = r[k]
    print(f"{k:<12}{x['median']*1e3:>10.3f}{x['mean']*1e3:>10.3f}{(x['median']-base)*1e3:>13.3f} ms")
c, t, d = r["corral"]["median"], r["tini"]["median"], r["dumb-init"]["median"]
print(f"ratio corral/tini (total): {c/t:.3f}   corral/dumb-init: {c/d:.3f}   (target: <= 1.0 vs tini)")
print(f"ratio of added time over /bin/true, corral/tini: {(c-base)/(t-base):.3f}")
PY

echo
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled
if [ -n "${AUTOGROUP:-}" ] && [ -w "$AUTOGROUP_FILE" ]; then
  old_autogroup=$(cat "$AUTOGROUP_FILE")
  trap 'echo "$old_autogroup" >"$AUTOGROUP_FILE"; rm -rf "$tmp"' EXIT  # (CONTAINER=1 adds rmdir)
  echo "$AUTOGROUP" >"$AUTOGROUP_FILE"
fi
echo "== reap latency: $ORPHANS orphans, each init as PID 1 of a new PID namespace, $ROUNDS rounds =="
declare -A INITS=(
  [baseline]="$tmp/init_reaper"
  [baseline-setsid]="$tmp/init_reaper -s"
  [tini]="tini --"
  [dumb-init]="dumb-init"
  [corral]="$CORRAL init --"
)
ORDER=(baseline baseline-setsid tini dumb-init corral)
: >"$tmp/reap.txt"
CPU_CG=""
if [ "${CONTAINER:-1}" = 1 ]; then
  if [ -d /sys/fs/cgroup/cpu ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
    CPU_CG=/sys/fs/cgroup/cpu/corral-init-bench  # cgroup v1 cpu controller (hybrid hosts)
  elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
    CPU_CG=/sys/fs/cgroup/corral-init-bench
  else
    echo "init_bench: no cpu controller to make a container-like cgroup with" >&2; exit 1
  fi
  mkdir "$CPU_CG"
  trap '[ -n "${old_autogroup:-}" ] && echo "$old_autogroup" >"$AUTOGROUP_FILE"; rmdir "$CPU_CG"; rm -rf "$tmp"' EXIT
  echo "(every init and its tree in the cpu cgroup $CPU_CG, as in a container)"
fi
# One init as PID 1 of a new PID namespace (in the container-like cgroup when there is one).
run_init() {
  # shellcheck disable=SC2086
  if [ -n "$CPU_CG" ]; then
    (echo "$BASHPID" >"$CPU_CG/cgroup.procs" && exec unshare --pid --fork --mount-proc "$@")
  else
    unshare --pid --fork --mount-proc "$@"
  fi
}
for ((i = 0; i < ROUNDS; i++)); do  # interleaved, so drift hits every init alike
  for name in "${ORDER[@]}"; do
    # shellcheck disable=SC2086
    out=$(run_init ${INITS[$name]} "$tmp/init_orphans" "$ORPHANS")
    echo "$name $out" >>"$tmp/reap.txt"
  done
done
python3 - "$tmp/reap.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, fork_ms, drain_ms = line.split()
    rows.setdefault(name, []).append((float(fork_ms), float(drain_ms)))
med = {k: (statistics.median(f for f, _ in v), statistics.median(d for _, d in v))
       for k, v in rows.items()}
print(f"{'init':<16}{'create ms':>10}{'drain ms (median)':>19}{'drain max':>11}")
for k in ["baseline", "baseline-setsid", "tini", "dumb-init", "corral"]:
    print(f"{k:<16}{med[k][0]:>10.2f}{med[k][1]:>19.3f}{max(d for _, d in rows[k]):>11.3f}")
b, bs, t = med["baseline"][1], med["baseline-setsid"][1], med["tini"][1]
c = med["corral"][1]
print(f"ratio drain corral/baseline: {c/b:.2f}   corral/baseline-setsid: {c/bs:.2f}   "
      f"corral/tini: {c/t:.2f}   (target: no worse than the bare signalfd + waitid loop)")
autogroup = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() \
    if __import__("os").path.exists("/proc/sys/kernel/sched_autogroup_enabled") else "absent"
print(f"kernel.sched_autogroup_enabled = {autogroup}: with 1, a child that leads its own session "
      f"(corral init, dumb-init, baseline-setsid) is its own scheduling group")
PY
