#!/usr/bin/env python3
"""A LangChain-style shell tool built on the corral client: a plain function whose name,
signature (typed arguments with defaults) and docstring are what tool frameworks read to build
the tool's schema, so it needs no LangChain import:

    from langchain_core.tools import tool
    shell_tool = tool(run_shell)             # or: @tool above the def

    # or any framework that takes a function: OpenAI-style function calling, smolagents, ...

Unlike a tool on subprocess.run(timeout=...), a command that hangs is killed with its whole
tree (grandchildren that called setsid, background jobs, a daemonized server) before the tool
returns; output is capped so a flood cannot blow up the agent's context or memory; and the
model gets a short, explicit account of what happened (exit code, timeout, truncation,
processes killed) instead of an exception.

Run it directly to try it:  python3 examples/langchain_shell_tool.py [--socket PATH] 'CMD'
"""

import os
import sys
from typing import Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "clients", "python"))

import corral  # noqa: E402

MAX_OUTPUT_BYTES = 64 * 1024  # what the model gets back per stream
MAX_TIMEOUT_S = 600.0


def run_shell(command: str, timeout_s: float = 60.0, cwd: Optional[str] = None) -> str:
    """Run a shell command (/bin/sh -c) and return its output.

    Use this to inspect files, run programs, build and test code. Each call starts fresh: `cd`
    and variables do not carry over, so pass `cwd` or chain commands with `&&`. The command
    gets an empty stdin: it must not wait for input. Anything it leaves running in the
    background is stopped when it returns.

    Args:
        command: the shell command line, e.g. "ls -la src && git status".
        timeout_s: seconds after which the command and everything it started is stopped
            (at most 600).
        cwd: directory to run in (default: the agent's working directory).

    Returns:
        The command's stdout and stderr, followed by a line stating its exit code, or that it
        timed out or was killed, and whether output was cut.
    """
    timeout_s = max(0.1, min(float(timeout_s), MAX_TIMEOUT_S))
    try:
        r = corral.run_result(command, shell=True, timeout=timeout_s, cwd=cwd,
                              max_output_bytes=MAX_OUTPUT_BYTES, grace_s=1.0)
    except corral.DaemonNotRunning as e:
        return f"[tool error] {e}"
    except (OSError, ValueError) as e:  # bad cwd, input that cannot be sent
        return f"[tool error] {e}"
    parts = []
    if r.stdout:
        parts.append(r.stdout if r.stdout.endswith("\n") else r.stdout + "\n")
    if r.stderr:
        parts.append("[stderr]\n" + (r.stderr if r.stderr.endswith("\n") else r.stderr + "\n"))
    if r.state == "timed_out":
        status = f"[timed out after {timeout_s:g} s; the command and its children were stopped]"
    elif r.state == "failed_to_start":
        status = f"[could not start: {r.error}]"
    elif r.exit_code is None:
        status = f"[killed by {r.signal}" + (f" ({r.reason})" if r.reason else "") + "]"
    else:
        status = f"[exit code {r.exit_code}]"
    notes = []
    for name in ("stdout", "stderr"):
        if getattr(r, f"{name}_truncated"):
            notes.append(f"{name} cut at {MAX_OUTPUT_BYTES} of {getattr(r, f'{name}_bytes')} "
                         f"bytes")
    if r.leftover.killed:
        notes.append(f"{r.leftover.killed} background process(es) stopped")
    if notes:
        status = status[:-1] + "; " + "; ".join(notes) + "]"
    parts.append(status)
    return "".join(parts)


# The same tool as a schema, for frameworks that take JSON function definitions.
RUN_SHELL_SCHEMA = {
    "name": "run_shell",
    "description": run_shell.__doc__.split("\n\n")[0],
    "parameters": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "the shell command line"},
            "timeout_s": {"type": "number", "default": 60, "maximum": MAX_TIMEOUT_S},
            "cwd": {"type": "string", "description": "directory to run in"},
        },
        "required": ["command"],
    },
}


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--socket":
        os.environ["CORRAL_SOCKET"] = args[1]
        args = args[2:]
    for cmd in args or ["echo hello; ls /nonexistent", "sleep 300 & echo started in background",
                        "sleep 5", "kill -9 $$"]:
        timeout = 1.0
        print(f"$ {cmd}\n{run_shell(cmd, timeout_s=timeout)}\n")
