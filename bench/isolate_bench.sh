#!/usr/bin/env bash
# Per-call cost of an isolated cell against bubblewrap and unshare(1), measured side by side in
# one hyperfine run (so the ratios compare like with like on whatever machine runs it):
#   corral-isolate   corral run --isolate -- /bin/true   (pid, mount, net, ipc, uts namespaces;
#                    host read-only; private /tmp and /dev/shm; fresh /proc; lo up; caps dropped;
#                    no_new_privs; Landlock; seccomp)
#   bwrap            bwrap --ro-bind / / --unshare-pid --unshare-net --dev /dev --proc /proc
#                    --tmpfs /tmp /bin/true   (comparable options, as in issue 8)
#   bwrap-all        the same plus --unshare-ipc --unshare-uts (corral's full namespace set)
#   bwrap-pid        bwrap --ro-bind / / --unshare-pid /bin/true   (the issue's 12.9 ms figure)
#   unshare          unshare --pid --fork --mount-proc /bin/true
#   corral-plain     corral run -- /bin/true (a cell without isolation)
#   true             /bin/true
# Prints medians and the ratios; the target is corral-isolate <= 0.8x bwrap.
# Usage: bench/isolate_bench.sh [RUNS]   (env: CORRAL_BIN, default build/corral; run as root for
# the comparison with unshare, which needs it)
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL=${CORRAL_BIN:-$PWD/build/corral}
RUNS=${1:-300}
for tool in hyperfine bwrap unshare python3; do
  command -v "$tool" >/dev/null || { echo "isolate_bench: $tool is missing" >&2; exit 1; }
done
[ -x "$CORRAL" ] || { echo "isolate_bench: build corral first ($CORRAL)" >&2; exit 1; }
"$CORRAL" run --isolate -- /bin/true || { echo "isolate_bench: --isolate fails here (see corral doctor)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== per call: CMD /bin/true (hyperfine, $RUNS runs, $(nproc) cores, $(uname -r)) =="
hyperfine -N --warmup 30 --runs "$RUNS" --export-json "$tmp/r.json" \
  -n true '/bin/true' \
  -n corral-plain "$CORRAL run -- /bin/true" \
  -n corral-isolate "$CORRAL run --isolate -- /bin/true" \
  -n bwrap 'bwrap --ro-bind / / --unshare-pid --unshare-net --dev /dev --proc /proc --tmpfs /tmp /bin/true' \
  -n bwrap-all 'bwrap --ro-bind / / --unshare-pid --unshare-net --unshare-ipc --unshare-uts --dev /dev --proc /proc --tmpfs /tmp /bin/true' \
  -n bwrap-pid 'bwrap --ro-bind / / --unshare-pid /bin/true' \
  -n unshare 'unshare --pid --fork --mount-proc /bin/true' >/dev/null 2>"$tmp/err" ||
  { cat "$tmp/err" >&2; exit 1; }
python3 - "$tmp/r.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
iso = r["corral-isolate"]["median"]
print(f"{'command':<16}{'median ms':>10}{'mean ms':>10}{'corral-isolate / this':>24}")
for k in ["true", "corral-plain", "corral-isolate", "bwrap", "bwrap-all", "bwrap-pid", "unshare"]:
    x = r[k]
    print(f"{k:<16}{x['median']*1e3:>10.3f}{x['mean']*1e3:>10.3f}{iso / x['median']:>23.2f}x")
ratio = iso / r["bwrap"]["median"]
print(f"\ncorral run --isolate = {ratio:.2f}x bwrap (comparable options); target <= 0.80x: "
      f"{'met' if ratio <= 0.8 else 'NOT met'}")
print(f"isolation adds {(iso - r['corral-plain']['median'])*1e3:.3f} ms to a plain cell")
PY
