#!/bin/bash
# Task queue throughput and latency: N /bin/true tasks through corral's durable SQLite queue
# (synchronous=FULL: every state change fsynced before it is acted on) against task-spooler
# (`tsp`, Debian's task-spooler; in-memory, no durability), in the same invocation.
#
#   bench/queue_bench.sh [BUILD_DIR] [N]      (defaults: build, 10000; N=2000 for a quick run)
#   bench/queue_bench.sh pg [BUILD_DIR] [N]   PostgreSQL mode (below)
#
# PostgreSQL mode: a private PostgreSQL 15 on loopback (initdb in the temp dir, run as the
# `postgres` OS user, fsync on, stopped and removed on exit); N /bin/true tasks submitted through
# pipelined JSON-RPC, spread over 1, 2 and 3 daemons sharing one database (a fresh database each
# time, --max-running 64 each), against the SQLite queue with 1 daemon in the same invocation.
#
# Measures, for each: tasks/s submitting through the CLI one process per task (what a shell
# script does) until all N are finished; for corral also through one pipelined JSON-RPC
# connection (what a dispatcher embedding the queue does); and the median end-to-end latency of
# one task (submit to done, 20 runs). tsp runs with TS_SLOTS=${TS_SLOTS:-4} and its own
# TS_SOCKET / TMPDIR in a temp dir; its server is ended by pid. Everything is cleaned up on exit.
# And the ceiling of any queue here: N /bin/true by bare posix_spawn + waitpid loops, one per CPU
# and nothing else (bench/spawn_floor.c, built with cc into the temp dir).
set -euo pipefail
PG=""
if [ "${1:-}" = pg ]; then PG=1; shift; fi
BUILD=${1:-build}
N=${2:-10000}
CORRAL=$(realpath "$BUILD/corral")
[ -n "$PG" ] || command -v tsp >/dev/null ||
  { echo "tsp not found: apt-get install task-spooler" >&2; exit 1; }
DIR=$(mktemp -d /tmp/corral-queue-bench.XXXXXX)
chmod 755 "$DIR"
DAEMON_PID=""
TSP_PID=""
PG_PIDS=()
PG_BIN=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  for p in "${PG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$TSP_PID" ] && kill -TERM "$TSP_PID" 2>/dev/null
  [ -n "$PG_BIN" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -m immediate -w stop \
    >/dev/null 2>&1
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

# N tasks through pipelined JSON-RPC, spread round-robin over the daemons' sockets; tasks/s until
# all are finished (counted through the first daemon).
rpc_run() {
  python3 - "$@" <<'PY'
import json, socket, sys, time
n, paths = int(sys.argv[1]), sys.argv[2:]
conns = []
for p in paths:
    s = socket.socket(socket.AF_UNIX); s.connect(p); conns.append(s.makefile("rwb"))
msg = lambda m, p, i: json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}) + "\n"
t0 = time.monotonic()
for off in range(0, n, 500):
    k = min(500, n - off)
    for j, f in enumerate(conns):
        f.write("".join(msg("submit", {"argv": ["/bin/true"]}, off + i)
                        for i in range(k) if i % len(conns) == j).encode())
        f.flush()
    for j, f in enumerate(conns):
        for i in range(k):
            if i % len(conns) == j: assert "result" in json.loads(f.readline())
f = conns[0]
while True:
    f.write(msg("tasks", {"limit": 1}, 0).encode()); f.flush()
    if json.loads(f.readline())["result"]["counts"]["succeeded"] == n: break
    time.sleep(0.02)
print(f"{n / (time.monotonic() - t0):.0f}")
PY
}

echo "N=$N /bin/true tasks; host: $(nproc) cores, $(uname -r)"
cc -O2 -pthread -o "$DIR/spawn_floor" "$(dirname "$0")/spawn_floor.c"

if [ -n "$PG" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 1; }
  mkdir -m 700 "$DIR/pg" && chown postgres:postgres "$DIR/pg"
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$PG_BIN/initdb" -D "$DIR/pg" --auth=trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg/log" -w \
    -o "-k $DIR/pg -h 127.0.0.1 -p $PORT" start >/dev/null
  start_daemon
  base=$(rpc_run "$N" "$DIR/corral.sock")
  stop_daemon
  echo "sqlite, 1 daemon:       $base tasks/s (baseline)"
  for k in 1 2 3; do
    psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE bench$k"
    socks=()
    PG_PIDS=()
    for i in $(seq "$k"); do
      "$CORRAL" daemon --socket "$DIR/pg$k-$i.sock" --state-dir "$DIR/pg$k-$i" --metrics off \
        --scan-interval 0 --queue "postgres://postgres@127.0.0.1:$PORT/bench$k" \
        2>>"$DIR/daemon.log" &
      PG_PIDS+=($!)
      socks+=("$DIR/pg$k-$i.sock")
      for _ in $(seq 500); do [ -S "$DIR/pg$k-$i.sock" ] && break; sleep 0.01; done
      [ -S "$DIR/pg$k-$i.sock" ] || { echo "daemon did not start: $(cat "$DIR/daemon.log")" >&2; exit 1; }
    done
    r=$(rpc_run "$N" "${socks[@]}")
    for p in "${PG_PIDS[@]}"; do kill -TERM "$p"; wait "$p" || true; done
    PG_PIDS=()
    awk -v k="$k" -v r="$r" -v b="$base" \
      'BEGIN { printf "postgres, %d daemon(s):  %d tasks/s (%.2fx sqlite)\n", k, r, r / b }'
  done
  exit 0
fi

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
corral_rpc=$(rpc_run "$N" "$DIR/corral.sock")
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

floor=$("$DIR/spawn_floor" "$N")
echo "ceiling:           $floor /bin/true/s (posix_spawn + waitpid, $(nproc) loops, no queue at all)"
awk -v a="$corral_cli" -v r="$corral_rpc" -v t="$tsp_cli" -v f="$floor" 'BEGIN {
  printf "ratio corral CLI / tsp CLI: %.2fx; corral JSON-RPC / tsp CLI: %.2fx\n", a / t, r / t
  printf "ceiling / tsp CLI: %.2fx (no queue can go past it here); corral JSON-RPC / ceiling: %.2f\n", f / t, r / f }'
