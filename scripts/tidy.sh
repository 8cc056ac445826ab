#!/usr/bin/env bash
# clang-tidy with the checked-in .clang-tidy (every enabled check is an error) over the sources of
# build/compile_commands.json (scripts/build.sh writes it), or over the FILEs given; one
# clang-tidy per core. Prints the findings and fails when there is any.
#   scripts/tidy.sh                   every .cc under src/ (tests included, fuzz targets not:
#                                     they build with clang in build-fuzz/)
#   scripts/tidy.sh src/api/jsonrpc.cc
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/compile_commands.json ] || cmake -S . -B build >/dev/null
files=("$@")
if ((${#files[@]} == 0)); then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- 'src/*.cc' |
    grep -v '_fuzz\.cc$')
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if printf '%s\n' "${files[@]}" |
  xargs -P"$(nproc)" -n4 clang-tidy -p build --quiet >"$log" 2>&1; then
  echo "tidy: ${#files[@]} files clean"
else
  grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed|^Use -header-filter|^Error while processing' "$log" || true
  echo "tidy: findings above (.clang-tidy makes each an error; fix, or NOLINT(check): reason)" >&2
  exit 1
fi
