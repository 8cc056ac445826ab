#!/usr/bin/env bash
# Installs everything corral's build, tests and benchmarks need on Debian 12 (clang and its
# runtimes for the fuzz targets, clang-format and clang-tidy for the checks), from Debian's
# packages (and npm for the MCP client used by the tests). Idempotent: packages already present
# are not downloaded again.
set -euo pipefail

packages=(
  build-essential cmake g++ pkg-config
  clang libclang-rt-14-dev clang-format clang-tidy
  libgtest-dev googletest nlohmann-json3-dev libsqlite3-dev libpq-dev postgresql
  python3 python3-pytest python3-psutil
  prometheus tini dumb-init bubblewrap hyperfine task-spooler
  util-linux procps iproute2 strace
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js (for the MCP client tests): the machine image may ship its own build, which Debian's
# npm package conflicts with, so install Debian's only where there is none.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "corral setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The official MCP client (npm registry) that the tests drive `corral mcp` with.
if [ ! -d "$(dirname "$0")/../tests/mcp/node_modules/@modelcontextprotocol/sdk" ]; then
  (cd "$(dirname "$0")/../tests/mcp" && npm ci --no-audit --no-fund --loglevel=error)
fi
