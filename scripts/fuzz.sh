#!/usr/bin/env bash
# Builds the libFuzzer targets (src/<layer>/*_fuzz.cc) with clang into build-fuzz/ and runs each
# for DURATION seconds (default 60), two at a time (one per core). Usage:
#   scripts/fuzz.sh [DURATION] [TARGET...]     e.g. scripts/fuzz.sh 600 jsonrpc_fuzz
# Each target starts from its checked-in seeds (tests/fuzz/TARGET/) plus what earlier runs here
# found (build-fuzz/corpus/TARGET/, kept between runs, never checked in). A crash, leak, sanitizer
# report or broken invariant fails the run and leaves the input as build-fuzz/crash/TARGET-*;
# replay it with build-fuzz/TARGET FILE, and add what it taught as a unit test next to the code.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
shift || true
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCORRAL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >/dev/null
cmake --build build-fuzz -j"$(nproc)"
((duration > 0)) || exit 0  # scripts/fuzz.sh 0: build only
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in src/*/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
fi

run_one() {
  local t=$1 corpus=build-fuzz/corpus/$1
  mkdir -p "$corpus" build-fuzz/crash
  # -rss_limit_mb: ASan's shadow plus a 4 KiB-line framer stays far below; a leak would not.
  if build-fuzz/"$t" "$corpus" "tests/fuzz/$t" -max_total_time="$duration" -max_len=4096 \
    -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crash/$t-" >"build-fuzz/$t.log" 2>&1; then
    echo "fuzz $t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$t.log" |
      grep -o '[0-9]*$') runs in ${duration}s, corpus $(ls "$corpus" | wc -l) inputs"
  else
    echo "fuzz $t: FAILED (log: build-fuzz/$t.log)"
    tail -40 "build-fuzz/$t.log"
    return 1
  fi
}

# Two at a time: libFuzzer is single-threaded and the machines this runs on have two cores.
failed=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if ((${#pids[@]} == 2)); then
    wait "${pids[0]}" || failed=1
    pids=("${pids[1]}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
