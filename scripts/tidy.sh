#!/usr/bin/env bash
# clang-tidy with the checked-in .clang-tidy over the sources of
# build/compile_commands.json (scripts/build.sh writes it), or over the FILEs given; one
# clang-tidy per core. Fails on a finding of a check that .clang-tidy keeps as an error, and
# counts the advisory ones.
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
rc=0
printf '%s\n' "${files[@]}" | xargs -P"$(nproc)" -n4 clang-tidy -p build --quiet >"$log" 2>&1 ||
  rc=$?
# Advisory checks (enabled, not in WarningsAsErrors): a count per check, for review.
grep -oE 'warning: .* \[[a-z0-9.,-]+\]$' "$log" | grep -oE '\[[a-z0-9.,-]+\]$' | sort | uniq -c |
  sed 's/^/tidy: advisory /' || true
if ((rc == 0)); then
  echo "tidy: ${#files[@]} files, no finding of a check kept as an error"
else
  grep -B1 -A3 -E 'error: ' "$log" | grep -v -E '^[0-9]+ warnings?.* generated\.$' || cat "$log"
  echo "tidy: findings above (.clang-tidy keeps these as errors; fix, or NOLINT(check): reason)" >&2
  exit 1
fi
