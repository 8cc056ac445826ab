#!/usr/bin/env bash
# The whole test suite, from a fresh clone, as root: installs what is missing, builds, runs the
# GoogleTest units and the integration tests that drive the real binary. Debian's python3 is
# used by path: pytest and psutil are its packages, whatever python3 comes first in PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
echo "== unit and in-process tests (ctest)"
(cd build && ctest --output-on-failure -j1 --timeout 600)
echo "== MCP against the official client (node --test)"
(cd tests/mcp && CORRAL_BIN="$PWD/../../build/corral" node --test --test-concurrency=1)
echo "== integration tests (pytest, real binary)"
CORRAL_BIN="$PWD/build/corral" CORRAL_PAYLOAD="$PWD/build/corral-payload" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration tests/python
