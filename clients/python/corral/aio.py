"""asyncio variant of the corral client: the same functions as `corral`, as coroutines.

    import corral.aio
    out = await corral.aio.run(["make", "test"], timeout=600, text=True)

Each call opens its own connection with asyncio.open_unix_connection, so any number of calls
can run concurrently on one event loop without blocking it. Cancelling the awaiting task
(asyncio.wait_for, TaskGroup, a client that went away) closes the connection, and the daemon
then cancels the cell: its whole tree is killed, nothing is left running for nobody.
"""

import asyncio
import subprocess
from typing import Any, Dict, List, Optional

from ._common import (
    UNSET, CellInfo, DaemonNotRunning, Output, Result, cell_params, client_timeout_error,
    completed, decode_answer, encode_request, plan_call, signal_name, socket_path)

# A result holds up to two streams of max_output_bytes (at most 64 MiB each), JSON-escaped.
_LINE_LIMIT = 1 << 30


async def call(method: str, params: Optional[Dict[str, Any]] = None, *, socket=None,
               timeout: Optional[float] = None) -> Any:
    """One JSON-RPC call on a fresh connection; returns the answer's `result`. Raises
    DaemonNotRunning, DaemonGone, RpcError, or asyncio.TimeoutError after `timeout` s."""
    path = socket_path(socket)
    line = encode_request(method, params)
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=_LINE_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
        raise DaemonNotRunning(path, e) from None
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"not allowed to connect to the corral daemon at {path}: the socket is "
            f"mode 0660; join its group (`corral daemon --socket-group`)") from None
    try:
        writer.write(line)
        try:
            await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = await asyncio.wait_for(reader.readline(), timeout)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        return decode_answer(answer, method, path)
    finally:
        # Also on cancellation: closing the connection is what cancels a `run` cell.
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


async def run_result(args, *, socket=None, **kwargs) -> Result:
    """As corral.run_result: the full Result, never raising for the command's outcome."""
    plan = plan_call(args, **kwargs)
    try:
        answer = await call("run", plan.params, socket=socket, timeout=plan.client_deadline())
    except asyncio.TimeoutError:
        raise client_timeout_error(plan) from None
    return Result.from_json(answer)


async def run(args, *, shell=False, timeout=None, cwd=None, env=None, input=None,
              capture_output=UNSET, text=False, check=False, stdout=None, stderr=None,
              encoding=None, errors=None, socket=None, **limits) -> subprocess.CompletedProcess:
    """As corral.run (subprocess.run's contract), awaitable."""
    plan = plan_call(args, shell=shell, timeout=timeout, cwd=cwd, env=env, input=input,
                     capture_output=capture_output, text=text, check=check, stdout=stdout,
                     stderr=stderr, encoding=encoding, errors=errors, **limits)
    try:
        answer = await call("run", plan.params, socket=socket, timeout=plan.client_deadline())
    except asyncio.TimeoutError:
        raise client_timeout_error(plan) from None
    return completed(plan, Result.from_json(answer))


async def start(args, *, socket=None, **kwargs) -> str:
    return (await call("start", cell_params(args, **kwargs), socket=socket))["id"]


async def wait(cell_id: str, timeout: Optional[float] = None, *,
               socket=None) -> Optional[Result]:
    params: Dict[str, Any] = {"id": cell_id}
    if timeout is not None:
        params["timeout_s"] = max(0.0, float(timeout))
    answer = await call("wait", params, socket=socket)
    if answer.get("state") == "running" and "argv" not in answer:
        return None
    return Result.from_json(answer)


async def output(cell_id: str, stream: str = "stdout", offset: int = 0,
                 max_bytes: Optional[int] = None, *, socket=None) -> Output:
    params: Dict[str, Any] = {"id": cell_id, "stream": stream, "offset": offset}
    if max_bytes is not None:
        params["max_bytes"] = max_bytes
    return Output(**(await call("output", params, socket=socket)))


async def kill(cell_id: str, signal=None, *, socket=None) -> None:
    params: Dict[str, Any] = {"id": cell_id}
    if signal is not None:
        params["signal"] = signal_name(signal)
    await call("kill", params, socket=socket)


async def list_cells(*, socket=None) -> List[CellInfo]:
    return [CellInfo.from_json(c) for c in (await call("list", None, socket=socket))["cells"]]


async def stats(*, socket=None) -> Dict[str, Any]:
    return await call("stats", None, socket=socket)


async def scan(*, socket=None) -> Dict[str, Any]:
    return await call("scan", None, socket=socket)


async def submit(args, *, retries=None, group=None, priority=None, key=None, socket=None,
                 **kwargs) -> str:
    params = cell_params(args, **kwargs)
    for name, value in (("retries", retries), ("group", group), ("priority", priority),
                        ("key", key)):
        if value is not None:
            params[name] = value
    return (await call("submit", params, socket=socket))["id"]


async def wait_task(task_id: str, timeout: Optional[float] = None, *,
                    socket=None) -> Dict[str, Any]:
    params: Dict[str, Any] = {"id": task_id}
    if timeout is not None:
        params["timeout_s"] = max(0.0, float(timeout))
    return await call("task_wait", params, socket=socket)
