"""corral: run commands in cells through the corral daemon, as a drop-in for subprocess.run.

    import corral
    out = corral.run(["git", "status"], timeout=10, text=True)   # a subprocess.CompletedProcess

Each call opens its own connection to the daemon's Unix socket, sends one JSON-RPC request and
reads one answer line, so the functions are safe from any thread: no shared connection, no
lock, no signal handler and no fork in the caller. The command runs in a cell of the daemon:
at its timeout the whole tree (setsid'd grandchildren too) is killed and reaped *before* the
answer comes, and a caller that goes away (exception, KeyboardInterrupt, killed thread's
process) closes the connection, which makes the daemon cancel the cell.

What differs from subprocess.run is listed in docs/python.md; the short version: output is
captured by default (capture_output defaults to True), stdin is empty unless `input` is given,
output is UTF-8 text on the wire (invalid bytes become U+FFFD) and capped per stream
(`max_output_bytes`, 1 MiB by default), a timeout sends SIGTERM and SIGKILL after `grace_s`
(2 s by default).

Standard library only; Python >= 3.9. The asyncio variant is corral.aio.
"""

import socket as _socket
import subprocess
from typing import Any, Dict, List, Optional

from ._common import (
    UNSET, CellInfo, DaemonGone, DaemonNotRunning, InvalidParams, Leftover, MethodNotFound,
    NotAllowed, Output, Overloaded, Result, RpcError, cell_params, client_timeout_error,
    completed, decode_answer, default_socket_path, encode_request, plan_call, signal_name,
    socket_path)

__all__ = [
    "run", "run_result", "start", "wait", "output", "kill", "list_cells", "stats", "scan",
    "submit", "wait_task", "call", "Result", "Leftover", "Output", "CellInfo",
    "DaemonNotRunning", "DaemonGone", "RpcError", "InvalidParams", "MethodNotFound",
    "Overloaded", "NotAllowed", "default_socket_path", "PIPE", "DEVNULL", "STDOUT",
    "CompletedProcess", "CalledProcessError", "TimeoutExpired",
]
__version__ = "0.1.0"

# Re-exported so that `import corral as subprocess`-style switches keep working.
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
CompletedProcess = subprocess.CompletedProcess
CalledProcessError = subprocess.CalledProcessError
TimeoutExpired = subprocess.TimeoutExpired

_READ_CHUNK = 1 << 20


class _ClientTimeout(Exception):
    pass


def call(method: str, params: Optional[Dict[str, Any]] = None, *, socket=None,
         timeout: Optional[float] = None) -> Any:
    """One JSON-RPC call on a fresh connection; returns the answer's `result`. Raises
    DaemonNotRunning, DaemonGone, RpcError (subclasses by code), or _ClientTimeout when
    `timeout` seconds pass without an answer (the connection is closed: a `run` is cancelled).
    """
    path = socket_path(socket)
    line = encode_request(method, params)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            raise DaemonNotRunning(path, e) from None
        except PermissionError as e:
            raise PermissionError(
                e.errno, f"not allowed to connect to the corral daemon at {path}: the socket "
                f"is mode 0660; join its group (`corral daemon --socket-group`)") from None
        s.settimeout(timeout)
        try:
            s.sendall(line)
            chunks = []
            while True:
                chunk = s.recv(_READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
                if chunk.endswith(b"\n"):  # one request, one answer: the line ends the reply
                    break
        except _socket.timeout:
            raise _ClientTimeout() from None
        except (BrokenPipeError, ConnectionResetError):
            chunks = []
        return decode_answer(b"".join(chunks), method, path)
    finally:
        s.close()


def run_result(args, *, socket=None, **kwargs) -> Result:
    """Runs the command in a cell and returns the full Result (never raises for the command's
    outcome: timeouts, non-zero exits and failures to start are states of the Result)."""
    plan = plan_call(args, **kwargs)
    try:
        answer = call("run", plan.params, socket=socket, timeout=plan.client_deadline())
    except _ClientTimeout:
        raise client_timeout_error(plan) from None
    return Result.from_json(answer)


def run(args, *, shell=False, timeout=None, cwd=None, env=None, input=None,
        capture_output=UNSET, text=False, check=False, stdout=None, stderr=None,
        encoding=None, errors=None, socket=None, **limits) -> subprocess.CompletedProcess:
    """subprocess.run, in a corral cell. Returns subprocess.CompletedProcess (with `.result`,
    the full Result); raises subprocess.TimeoutExpired (after the whole tree is gone; it carries
    the output captured so far and `.result`), subprocess.CalledProcessError with check=True,
    and OSError (FileNotFoundError, PermissionError, ...) when the command cannot start.

    Extra keyword arguments: grace_s, kill_wait_s, max_output_bytes, memory_bytes, pids, cpu_s,
    user, isolate (see docs/protocol.md). `socket` picks the daemon (default: $CORRAL_SOCKET,
    else /run/corral/corral.sock as root, else $XDG_RUNTIME_DIR/corral.sock).
    """
    plan = plan_call(args, shell=shell, timeout=timeout, cwd=cwd, env=env, input=input,
                     capture_output=capture_output, text=text, check=check, stdout=stdout,
                     stderr=stderr, encoding=encoding, errors=errors, **limits)
    try:
        answer = call("run", plan.params, socket=socket, timeout=plan.client_deadline())
    except _ClientTimeout:
        raise client_timeout_error(plan) from None
    return completed(plan, Result.from_json(answer))


def start(args, *, socket=None, **kwargs) -> str:
    """Starts the command in a cell that outlives this call (and this connection); returns its
    id for wait/output/kill. Takes run's arguments except the output-handling ones."""
    return call("start", cell_params(args, **kwargs), socket=socket)["id"]


def wait(cell_id: str, timeout: Optional[float] = None, *, socket=None) -> Optional[Result]:
    """The cell's Result once it has ended; None if it is still running after `timeout` s."""
    params: Dict[str, Any] = {"id": cell_id}
    if timeout is not None:
        params["timeout_s"] = max(0.0, float(timeout))
    answer = call("wait", params, socket=socket)
    if answer.get("state") == "running" and "argv" not in answer:
        return None
    return Result.from_json(answer)


def output(cell_id: str, stream: str = "stdout", offset: int = 0,
           max_bytes: Optional[int] = None, *, socket=None) -> Output:
    """A page of the cell's captured output from byte `offset`; pass `next_offset` back."""
    params: Dict[str, Any] = {"id": cell_id, "stream": stream, "offset": offset}
    if max_bytes is not None:
        params["max_bytes"] = max_bytes
    return Output(**call("output", params, socket=socket))


def kill(cell_id: str, signal=None, *, socket=None) -> None:
    """Without `signal`: SIGTERM to the tree, grace, SIGKILL (the cell ends `cancelled`).
    With it (a number or a name): that signal to every process of the tree."""
    params: Dict[str, Any] = {"id": cell_id}
    if signal is not None:
        params["signal"] = signal_name(signal)
    call("kill", params, socket=socket)


def list_cells(*, socket=None) -> List[CellInfo]:
    """Your running, queued and last 1,000 finished cells (root sees everyone's)."""
    return [CellInfo.from_json(c) for c in call("list", None, socket=socket)["cells"]]


def stats(*, socket=None) -> Dict[str, Any]:
    """The daemon's counters: running, queued, finished by state, reaped_total, ..."""
    return call("stats", None, socket=socket)


def scan(*, socket=None) -> Dict[str, Any]:
    """The daemon's latest host scan (the `corral scan --json` object)."""
    return call("scan", None, socket=socket)


def submit(args, *, retries=None, group=None, priority=None, key=None, socket=None,
           **kwargs) -> str:
    """Queues the command in the daemon's durable task queue; returns the task id at once.
    Raises MethodNotFound if this daemon has no task queue."""
    params = cell_params(args, **kwargs)
    for name, value in (("retries", retries), ("group", group), ("priority", priority),
                        ("key", key)):
        if value is not None:
            params[name] = value
    return call("submit", params, socket=socket)["id"]


def wait_task(task_id: str, timeout: Optional[float] = None, *, socket=None) -> Dict[str, Any]:
    """The task as the daemon reports it (state, attempts, result once done), waiting at most
    `timeout` s for it to finish."""
    params: Dict[str, Any] = {"id": task_id}
    if timeout is not None:
        params["timeout_s"] = max(0.0, float(timeout))
    return call("task_wait", params, socket=socket)


def __getattr__(name):
    # `corral.aio` without importing asyncio for callers that never use it.
    if name == "aio":
        import importlib
        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
