#!/bin/bash
# Task queue throughput and latency: N /bin/true tasks through corral's durable SQLite queue
# (synchronous=FULL: every state change fsynced before it is acted on) against task-spooler
# (`tsp`, Debian's task-spooler; in-memory, no durability), in the same invocation.
#
#   bench/queue_bench.sh [BUILD_DIR] [N]      (defaults: build, 10000; N=2000 for a quick run)
#
# Measures, for each: tasks/s submitting through the CLI one process per task (what a shell
# script does) until all N are finished; for corral also through one pipelined JSON-RPC
# connection (what a dispatcher embedding the queue does); and the median end-to-end latency of
# one task (submit to done, 20 runs). tsp runs with TS_SLOTS=${TS_SLOTS:-4} and its own
# TS_SOCKET / TMPDIR in a temp dir; its server is ended by pid. Everything is cleaned up on exit.
set -euo pipefail
BUILD=${1:-build}
N=${2:-10000}
CORRAL=$(realpath "$BUILD/corral")
command -v tsp >/dev/null || { echo "tsp not found: apt-get install task-spooler" >&2; exit 1; }
DIR=$(mktemp -d /tmp/corral-queue-bench.XXXXXX)
chmod 755 "$DIR"
DAEMON_PID=""
TSP_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  [ -n "$TSP_PID" ] && kill -TERM "$TSP_PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_daemon() {
  rm -rf "$DIR/state" "$DIR/corral.sock"
  "$CORRAL" daemon --socket "$DIR/corral.sock" --state-dir "$DIR/state" --metrics off \
    --scan-interval 0 2>>"$DIR/daemon.log" &
  DAEMON_PID=$!
  for _ in $(seq 500); do [ -S "$DIR/corral.sock" ] && return; sleep 0.01; done
  echo "daemon did not start: $(cat "$DIR/daemon.log")" >&2; exit 1
}
stop_daemon() { kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=""; }
C() { "$CORRAL" "$1" --socket "$DIR/corral.sock" "${@:2}"; }
corral_done() {
  C tasks --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["succeeded"])'
}
wait_corral() { while [ "$(corral_done)" -lt "$1" ]; do sleep 0.05; done; }

echo "N=$N /bin/true tasks; host: $(nproc) cores, $(uname -r)"

# --- corral, CLI: one `corral submit` process per task
start_daemon
t0=$(now_ms)
for _ in $(seq "$N"); do C submit -- /bin/true >/dev/null; done
wait_corral "$N"
t1=$(now_ms)
corral_cli=$(awk -v n="$N" -v ms=$((t1 - t0)) 'BEGIN {printf "%.0f", n * 1000 / ms}')
echo "corral CLI:        $corral_cli tasks/s ($((t1 - t0)) ms)"
stop_daemon

# --- corral, one pipelined JSON-RPC connection
start_daemon
corral_rpc=$(python3 - "$DIR/corral.sock" "$N" <<'PY'
import json, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
msg = lambda m, p, i: json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}) + "\n"
t0 = time.monotonic()
for off in range(0, n, 500):
    k = min(500, n - off)
    f.write("".join(msg("submit", {"argv": ["/bin/true"]}, off + i) for i in range(k)).encode())
    f.flush()
    for _ in range(k): assert "result" in json.loads(f.readline())
while True:
    f.write(msg("tasks", {"limit": 1}, 0).encode()); f.flush()
    if json.loads(f.readline())["result"]["counts"]["succeeded"] == n: break
    time.sleep(0.02)
print(f"{n / (time.monotonic() - t0):.0f}")
PY
)
echo "corral JSON-RPC:   $corral_rpc tasks/s"
lat=()
for _ in $(seq 20); do
  a=$(date +%s%N); id=$(C submit -- /bin/true); C wait "$id" >/dev/null; b=$(date +%s%N)
  lat+=($(( (b - a) / 1000 )))
done
corral_lat=$(printf '%s\n' "${lat[@]}" | median)
echo "corral latency:    ${corral_lat} us (median of 20, submit + wait)"
stop_daemon

# --- task-spooler, CLI: one `tsp` process per task
export TS_SOCKET="$DIR/ts.sock" TMPDIR="$DIR/tsp-tmp" TS_SLOTS=${TS_SLOTS:-4} TS_MAXFINISHED=10000000
mkdir -p "$TMPDIR"
tsp_done() { tsp -l | grep -c ' finished ' || true; }
t0=$(now_ms)
first=$(tsp /bin/true)
TSP_PID=$(ss -xlp 2>/dev/null | awk -v s="$TS_SOCKET" '$5 == s {match($0, /pid=[0-9]+/); print substr($0, RSTART + 4, RLENGTH - 4)}')
for _ in $(seq $((N - 1))); do tsp /bin/true >/dev/null; done
while [ "$(tsp_done)" -lt "$N" ]; do sleep 0.05; done
t1=$(now_ms)
tsp_cli=$(awk -v n="$N" -v ms=$((t1 - t0)) 'BEGIN {printf "%.0f", n * 1000 / ms}')
echo "tsp CLI:           $tsp_cli tasks/s ($((t1 - t0)) ms, TS_SLOTS=$TS_SLOTS)"
tsp -C >/dev/null
lat=()
for _ in $(seq 20); do
  a=$(date +%s%N); id=$(tsp /bin/true); tsp -w "$id" >/dev/null; b=$(date +%s%N)
  lat+=($(( (b - a) / 1000 )))
done
tsp_lat=$(printf '%s\n' "${lat[@]}" | median)
echo "tsp latency:       ${tsp_lat} us (median of 20, tsp + tsp -w)"
: "$first"

awk -v a="$corral_cli" -v r="$corral_rpc" -v t="$tsp_cli" 'BEGIN {
  printf "ratio corral CLI / tsp CLI: %.2fx; corral JSON-RPC / tsp CLI: %.2fx\n", a / t, r / t }'
