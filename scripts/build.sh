#!/usr/bin/env bash
# Configures and builds into build/ (binary: build/corral). Extra args go to cmake configure,
# e.g. scripts/build.sh -DCORRAL_SANITIZE=address.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build -j"$(nproc)"
