#!/usr/bin/env bash
# The test suite under CPU load, to shake out timing flakes before CI does: BUSY loops spin on the
# machine's cores while ctest, the Node MCP tests and the pytest integration tests run ROUNDS
# times. A test that needs the machine to be idle to pass is a bug in the test. Prints a summary
# line per suite and round, and every failure; exits 1 if anything failed.
# Usage: bench/suite_under_load.sh [ROUNDS] [BUSY]   (defaults 2 rounds, 3 busy loops; needs the
# build that scripts/test.sh makes, and root, as the suite does)
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
busy=${2:-3}
loops=()
stop_loops() {  # ours only, by pid
  ((${#loops[@]})) || return 0
  kill "${loops[@]}" 2>/dev/null
  wait "${loops[@]}" 2>/dev/null
  return 0
}
trap stop_loops EXIT
for _ in $(seq "$busy"); do
  bash -c 'while :; do :; done' &
  loops+=($!)
done
failed=0
show() {  # summary and failure lines of one suite's output
  grep -E "$1" <<<"$2" | head -40
  if grep -qE "$3" <<<"$2"; then failed=1; fi
}
for r in $(seq "$rounds"); do
  echo "== round $r of $rounds, $busy busy loops"
  out=$(cd build && ctest -j1 --timeout 600 2>&1)
  show "tests passed|\(Failed\)|\(Timeout\)" "$out" "\(Failed\)|\(Timeout\)"
  out=$(cd tests/mcp && CORRAL_BIN="$PWD/../../build/corral" node --test --test-concurrency=1 2>&1)
  show "^# (pass|fail)|^not ok" "$out" "^not ok"
  out=$(CORRAL_BIN="$PWD/build/corral" CORRAL_PAYLOAD="$PWD/build/corral-payload" \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration tests/python 2>&1)
  show "^E  |^FAILED| passed| failed" "$out" "^FAILED|^ERROR"
done
exit $failed
