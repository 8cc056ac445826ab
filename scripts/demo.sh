#!/usr/bin/env bash
# The main job on embedded defaults: 30 agent tool calls at once (hung commands with escaping
# grandchildren, commands that leave background children, output floods), once with Python's
# subprocess.run(timeout=...) and once with corral.run, and what each left on the machine. The
# demo starts its own daemon on a temporary socket and cleans up everything, also what the
# subprocess.run half leaked.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== corral doctor"
build/corral doctor
echo
echo "== examples/agent_demo.py"
/usr/bin/python3 examples/agent_demo.py
