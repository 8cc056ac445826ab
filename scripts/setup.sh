#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root): install what is needed, build, and run
# the main job on its defaults, a misbehaving command tree run in a cell.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
scripts/demo.sh
