#!/bin/sh
# Wrapper: runs bench/scan_bench.py with Debian's python3 (python3-psutil). Build first.
exec /usr/bin/python3 "$(dirname "$0")/scan_bench.py" "$@"
