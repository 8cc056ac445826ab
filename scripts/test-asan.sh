#!/usr/bin/env bash
# The sanitizer pass of the suite (`scripts/test-asan.sh build` only builds): builds corral, its
# gtests and the test payload (uninstrumented) with ASan + UBSan (gcc, -DCORRAL_SANITIZE=address)
# into build-asan/, then runs the gtests and the daemon and queue integration files against that
# binary. Any report fails the run (UBSan does not recover;
# ASan aborts on the first error and LeakSanitizer fails the process at exit).
#
# -O1 -g1: a third of -O2 -g's compile time under ASan (measured on jsonrpc.cc), line numbers
# kept for the reports. Settings and their reasons:
# - detect_leaks=0 for corral processes started by the integration tests: a daemon's isolated
#   cells run corral's init as PID 1 of a new PID namespace, where LeakSanitizer cannot work (it
#   stops the world through ptrace-like tracing of its own threads and aborts there). The gtests
#   keep leak detection: they are where an owner forgetting to free shows up.
# - CORRAL_SANITIZER=address tells tests/daemonutil.py, whose SANITIZER lets a test whose bound
#   holds only for a normal build (resident memory under ASan's shadow and quarantine) skip
#   itself with that reason.
# - The payload comes from build/ (scripts/build.sh ran first): it is scaffolding, not under test.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCORRAL_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" >/dev/null
cmake --build build-asan -j"$(nproc)" --target corral corral-payload corral_tests fake_nvml
[ "${1:-}" = build ] && exit 0
export CORRAL_SANITIZER=address
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== ASan+UBSan: unit and in-process tests (build-asan, ctest)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  bash -c 'cd build-asan && ctest --output-on-failure -j1 --timeout 600'
echo "== ASan+UBSan: daemon and queue integration tests (build-asan/corral)"
ASAN_OPTIONS=detect_leaks=0 CORRAL_BIN="$PWD/build-asan/corral" \
  CORRAL_PAYLOAD="$PWD/build/corral-payload" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_daemon.py \
  tests/integration/test_queue.py
