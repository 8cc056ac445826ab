#!/usr/bin/env bash
# Fails (exit 1, naming each file and line) when a C/C++ file under src/, tests/ or bench/ differs
# from what the checked-in .clang-format makes of it. Fix with: scripts/check-format.sh --fix.
# Files are taken from git (tracked and untracked-but-not-ignored), so build trees never count.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
  'src/*.cc' 'src/*.h' 'src/*.c' 'tests/*.cc' 'tests/*.h' 'tests/*.c' \
  'bench/*.cc' 'bench/*.h' 'bench/*.c' | while read -r f; do [ -e "$f" ] && echo "$f"; done)
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "check-format: the files above differ from .clang-format (scripts/check-format.sh --fix)" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files clean"
