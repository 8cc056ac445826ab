#!/usr/bin/env bash
# The main job on embedded defaults: run a command tree that misbehaves the way agent tool calls
# do (a grandchild that escapes with setsid, one that ignores SIGTERM, output) under a 1 s
# timeout, print corral's result, and show that nothing of the tree is left.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=build/corral
echo "== corral doctor"
$bin doctor
echo
echo "== corral run --json --timeout 1s -- sh -c '<escaping, TERM-ignoring tree>'"
$bin run --json --timeout 1s --grace 500ms -- /bin/sh -c '
  setsid sh -c "sleep 300" &
  sh -c "trap \"\" TERM; sleep 300" &
  echo started; sleep 300'
echo "exit status: $? (124 = timed out)"
left=$(ps -eo args | grep -c '^sleep 300$' || true)
echo "processes of the tree still alive: $left"
