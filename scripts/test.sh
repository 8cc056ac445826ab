#!/usr/bin/env bash
# The whole test suite, from a fresh clone, as root: installs what is missing, checks the format,
# builds, runs the GoogleTest units and the integration tests that drive the real binary, then
# the same gtests and the daemon/queue integration files under ASan+UBSan (build-asan/), the
# fuzz targets for 20 s each (build-fuzz/), and clang-tidy (docs/coding-guidelines.md says how
# to run each alone). Debian's python3 is used by path: pytest and psutil are its packages,
# whatever python3 comes first in PATH.
#
# Time (2 cores): the sanitizer and fuzz builds and clang-tidy start in the background at nice 19
# right after the main build, so they use the cores the integration tests leave idle (those
# mostly wait on processes and timers) instead of adding their CPU time to the run; a test
# that passes only on an idle machine is a bug anyway (bench/suite_under_load.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
phase() { echo "== $1 (at $((SECONDS - t0))s)"; }
scripts/install-deps.sh
phase "format (clang-format --dry-run -Werror)"
scripts/check-format.sh
phase "build (build/)"
scripts/build.sh

mkdir -p build
phase "background: ASan+UBSan build, fuzz build, clang-tidy (nice 19; logs in build/)"
# Each in a process group of its own (setsid), so that a failing foreground step stops the
# whole job, compilers included, by its group id.
setsid nice -n 19 bash -c 'scripts/test-asan.sh build && scripts/fuzz.sh 0' \
  >build/background-builds.log 2>&1 &
builds_pid=$!
setsid nice -n 19 scripts/tidy.sh >build/tidy.log 2>&1 &
tidy_pid=$!
trap 'kill -- -$builds_pid -$tidy_pid 2>/dev/null || true' EXIT

phase "unit and in-process tests (ctest)"
(cd build && ctest --output-on-failure -j1 --timeout 600)
phase "MCP against the official client (node --test)"
(cd tests/mcp && CORRAL_BIN="$PWD/../../build/corral" node --test --test-concurrency=1)
phase "integration tests (pytest, real binary)"
CORRAL_BIN="$PWD/build/corral" CORRAL_PAYLOAD="$PWD/build/corral-payload" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration tests/python

phase "waiting for the background builds"
if ! wait $builds_pid; then
  cat build/background-builds.log
  exit 1
fi
phase "sanitizers (scripts/test-asan.sh)"
scripts/test-asan.sh
phase "fuzzing, 20 s a target (scripts/fuzz.sh)"
scripts/fuzz.sh 20
phase "clang-tidy (scripts/tidy.sh)"
tidy_rc=0
wait $tidy_pid || tidy_rc=$?
cat build/tidy.log
trap - EXIT
((tidy_rc == 0)) || exit 1
phase "all passed"
