"""What the blocking and the asyncio clients share: where the socket is, the errors, the result
object, and the translation between subprocess.run's arguments and the daemon's cell params.

Nothing here does I/O on the daemon's socket; corral/__init__.py and corral/aio.py each own one
transport (a connection per call, so no state is shared between threads or tasks).

Hazards the translation handles (each one would make `corral.run` differ from `subprocess.run`
silently): the command runs in the *daemon's* process, so the caller's working directory and
environment are sent explicitly (cwd=None means os.getcwd(), env=None means os.environ);
JSON strings cannot hold arbitrary bytes, so argv/env/input that are not UTF-8 are refused
with ValueError instead of being mangled; a signal death is reported by name and turned back
into subprocess's negative return code.
"""

import dataclasses
import errno as _errno
import io
import json
import os
import re
import signal as _signal
import subprocess
from typing import Any, Dict, List, Optional

# The daemon refuses request lines over 4 MiB (docs/protocol.md, "Framing").
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Margin on top of timeout + grace + kill_wait before the client stops waiting on its own.
# The daemon answers within that bound (DESIGN.md guarantee 3); this only guards against a
# daemon that is wedged, and closing the connection then cancels the cell (client_gone).
CLIENT_MARGIN_S = 30.0
DEFAULT_GRACE_S = 2.0
DEFAULT_KILL_WAIT_S = 1.0

# Keyword arguments of subprocess.run that mean nothing for a cell and are accepted silently:
# every cell already gets only fds 0-2 and its own session/process group.
_NOOP_KWARGS = frozenset({"close_fds", "start_new_session", "process_group", "restore_signals",
                          "bufsize"})
# Everything corral.run takes beyond subprocess.run's arguments (the "**limits").
LIMIT_KWARGS = frozenset({"grace_s", "kill_wait_s", "max_output_bytes", "memory_bytes", "pids",
                          "cpu_s", "user", "isolate"})


def default_socket_path() -> str:
    """The socket the daemon listens on by default (docs/protocol.md, "Where the socket is")."""
    env = os.environ.get("CORRAL_SOCKET")
    if env:
        return env
    euid = os.geteuid()
    if euid == 0:
        return "/run/corral/corral.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        return xdg.rstrip("/") + "/corral.sock"
    return f"/tmp/corral-{euid}/corral.sock"


def socket_path(explicit=None) -> str:
    """explicit (a str or PathLike), else $CORRAL_SOCKET, else the daemon's default path."""
    if explicit is not None:
        return os.fsdecode(explicit)
    return default_socket_path()


# ---------------------------------------------------------------------------------------------
# Errors


class DaemonNotRunning(ConnectionError):
    """No corral daemon accepts connections on the socket (it is missing, or nobody listens)."""

    def __init__(self, path: str, cause: OSError):
        self.path = path
        self.cause = cause
        super().__init__(
            cause.errno,
            f"no corral daemon at {path} (connect: {cause.strerror or cause}). Start one with "
            f"`corral daemon --socket {path}` (as root its default is /run/corral/corral.sock, "
            f"otherwise $XDG_RUNTIME_DIR/corral.sock; deploy/ has a systemd unit), or point the "
            f"client at a running daemon with socket=... or $CORRAL_SOCKET")

    def __str__(self):
        return self.args[1]


class DaemonGone(ConnectionError):
    """The daemon closed the connection before answering (it stopped or crashed mid-call)."""


class RpcError(Exception):
    """The daemon answered with a JSON-RPC error. `code` and `message` are the daemon's."""

    def __init__(self, code: int, message: str, method: str = ""):
        self.code = code
        self.message = message
        self.method = method
        super().__init__(f"corral daemon refused `{method}`: {message} (code {code})")


class InvalidParams(RpcError, ValueError):
    """-32602: a parameter the daemon does not accept (also: an unknown cell id)."""


class MethodNotFound(RpcError):
    """-32601: this daemon does not have the method (an older daemon, or no task queue)."""


class Overloaded(RpcError):
    """-32001: the daemon's queue is full or the host is near its limits; retry later."""


class NotAllowed(RpcError, PermissionError):
    """-32003: the caller may not do this (e.g. run as another user)."""


_RPC_ERRORS = {-32602: InvalidParams, -32601: MethodNotFound, -32001: Overloaded,
               -32003: NotAllowed}


def rpc_error(code: int, message: str, method: str) -> RpcError:
    return _RPC_ERRORS.get(code, RpcError)(code, message, method)


# ---------------------------------------------------------------------------------------------
# Result objects


@dataclasses.dataclass
class Leftover:
    """Processes still alive when the leader ended: `killed` by corral; `stuck` in D state
    after SIGKILL when the call returned (details in `stuck_processes`)."""
    killed: int = 0
    stuck: int = 0
    stuck_processes: List[Dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Result:
    """The daemon's result object (DESIGN.md, "Result object"), field for field. stdout and
    stderr are str: the captured bytes as UTF-8, invalid bytes replaced by U+FFFD."""
    id: str
    argv: List[str]
    state: str  # exited | timed_out | killed | cancelled | failed_to_start
    exit_code: Optional[int]
    signal: Optional[str]
    duration_s: float
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int
    stderr_bytes: int
    peak_memory_bytes: Optional[int]
    cpu_user_s: Optional[float]
    cpu_system_s: Optional[float]
    pids_peak: Optional[int]
    leftover: Leftover
    containment: str
    reason: Optional[str]
    limits_hit: List[str]
    error: Optional[str]
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # fields of newer daemons

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Result":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {n: j.get(n) for n in names}
        kw["argv"] = kw["argv"] or []
        kw["stdout"] = kw["stdout"] or ""
        kw["stderr"] = kw["stderr"] or ""
        kw["limits_hit"] = kw["limits_hit"] or []
        for n in ("stdout_truncated", "stderr_truncated"):
            kw[n] = bool(kw[n])
        for n in ("stdout_bytes", "stderr_bytes"):
            kw[n] = kw[n] or 0
        kw["duration_s"] = kw["duration_s"] or 0.0
        lo = j.get("leftover") or {}
        kw["leftover"] = Leftover(lo.get("killed", 0), lo.get("stuck", 0),
                                  lo.get("stuck_processes", []))
        kw["extra"] = {k: v for k, v in j.items() if k not in names}
        return cls(**kw)

    @property
    def returncode(self) -> Optional[int]:
        """subprocess's convention: the exit code, or -N when signal N killed the leader;
        None when it never started."""
        if self.exit_code is not None and self.state != "failed_to_start":
            return self.exit_code
        if self.signal:
            return -signal_number(self.signal)
        return None

    @property
    def ok(self) -> bool:
        return self.state == "exited" and self.exit_code == 0


@dataclasses.dataclass
class Output:
    """A page of a cell's captured output (the `output` method)."""
    data: str
    offset: int
    next_offset: int
    total_bytes: int
    truncated: bool
    done: bool


@dataclasses.dataclass
class CellInfo:
    """One line of `list`: a running, queued or recently finished cell."""
    id: str
    argv: List[str]
    state: str
    pid: Optional[int]
    uid: int
    age_s: float
    exit_code: Optional[int] = None
    duration_s: Optional[float] = None
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, j):
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{n: j.get(n) for n in names},
                   extra={k: v for k, v in j.items() if k not in names})


def signal_number(name: str) -> int:
    try:
        return int(_signal.Signals[name])
    except KeyError:
        return int(_signal.Signals["SIG" + name]) if not name.startswith("SIG") else 0


def signal_name(sig) -> Optional[str]:
    if sig is None:
        return None
    if isinstance(sig, str):
        return sig
    return _signal.Signals(int(sig)).name


# ---------------------------------------------------------------------------------------------
# subprocess.run arguments -> cell params


def _text(value, what: str) -> str:
    """A str that JSON can carry: bytes/PathLike decoded; non-UTF-8 refused (not mangled)."""
    s = os.fsdecode(value) if not isinstance(value, str) else value
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"corral: {what} {value!r} is not valid UTF-8; the daemon's protocol "
                         f"carries text only") from None
    return s


def current_umask() -> Optional[int]:
    """This process's umask, read from /proc (Linux 4.7+): os.umask can only read it by setting
    it, which would race with the other threads of the caller. None when /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def command_params(args, shell: bool) -> Dict[str, Any]:
    """argv or shell, following subprocess's POSIX rules."""
    if isinstance(args, (str, bytes, os.PathLike)):
        if shell:
            return {"shell": _text(args, "command")}
        return {"argv": [_text(args, "program")]}
    argv = [_text(a, "argument") for a in args]
    if not argv:
        raise ValueError("corral: args must not be empty")
    if shell:  # subprocess: ["/bin/sh", "-c", args[0], args[1], ...]
        return {"argv": ["/bin/sh", "-c", *argv]}
    return {"argv": argv}


def _merge_stderr(params: Dict[str, Any]) -> Dict[str, Any]:
    """stderr=STDOUT: the command's fd 2 becomes its fd 1, in the cell, so the interleaving is
    the real one (not stdout and stderr glued together afterwards)."""
    if "shell" in params:
        return {"shell": "exec 2>&1\n" + params["shell"]}
    return {"argv": ["/bin/sh", "-c", 'exec 2>&1; exec "$@"', "sh", *params["argv"]]}


class _Unset:
    def __repr__(self):
        return "True"

    def __bool__(self):
        return True


UNSET = _Unset()  # capture_output's default: True unless stdout/stderr say otherwise


@dataclasses.dataclass
class Plan:
    """A translated call: what to send, and how to turn the answer into subprocess's objects."""
    args: Any  # as the caller gave it (CompletedProcess.args, exception .cmd)
    params: Dict[str, Any]
    timeout: Optional[float]
    text: bool
    encoding: Optional[str]
    errors: Optional[str]
    stdout: Any  # "capture" | "discard" | "inherit" | a file object or fd
    stderr: Any
    check: bool

    def client_deadline(self) -> Optional[float]:
        """How long the transport waits for the answer before giving up on the daemon."""
        if self.timeout is None:
            return None
        return (self.timeout + self.params.get("grace_s", DEFAULT_GRACE_S)
                + self.params.get("kill_wait_s", DEFAULT_KILL_WAIT_S) + CLIENT_MARGIN_S)


def _stream_mode(value, name: str):
    if value is None:
        return "inherit"
    if value == subprocess.PIPE:
        return "capture"
    if value == subprocess.DEVNULL:
        return "discard"
    if value == subprocess.STDOUT:
        if name == "stderr":
            return "merge"
        raise ValueError("corral: stdout=STDOUT is not valid")
    if isinstance(value, int) or hasattr(value, "write"):
        return value
    raise TypeError(f"corral: {name} must be PIPE, DEVNULL, STDOUT, None, an fd or a writable "
                    f"file object, not {type(value).__name__}")


def plan_call(args, *, shell=False, timeout=None, cwd=None, env=None, input=None,
              capture_output=UNSET, text=False, check=False, stdout=None, stderr=None,
              encoding=None, errors=None, stdin=None, universal_newlines=None,
              **limits) -> Plan:
    """Translates subprocess.run's arguments into cell params (raises TypeError/ValueError for
    what cannot be honoured, before anything runs)."""
    unknown = set(limits) - LIMIT_KWARGS - _NOOP_KWARGS
    if unknown:
        raise TypeError(
            f"corral.run() got unsupported argument(s) {', '.join(sorted(unknown))}; corral "
            f"takes subprocess.run's arguments (no preexec_fn, pass_fds, executable, ...) and "
            f"{', '.join(sorted(LIMIT_KWARGS))}")
    limits = {k: v for k, v in limits.items() if k in LIMIT_KWARGS and v is not None}
    text = bool(text or universal_newlines or encoding is not None or errors is not None)

    if capture_output is not UNSET and capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        out_mode = err_mode = "capture"
    elif capture_output is UNSET and stdout is None and stderr is None:
        out_mode = err_mode = "capture"
    else:
        out_mode = _stream_mode(stdout, "stdout")
        err_mode = _stream_mode(stderr, "stderr")

    params = command_params(args, shell)
    if err_mode == "merge":
        params = _merge_stderr(params)
    params["cwd"] = os.path.abspath(_text(cwd, "cwd")) if cwd is not None else os.getcwd()
    mask = current_umask()
    if mask is not None:
        params["umask"] = mask  # as subprocess: files the command makes get this process's modes
    source_env = os.environ if env is None else env
    params["env"] = {_text(k, "environment name"): _text(v, "environment value")
                     for k, v in source_env.items()}
    params["clear_env"] = True

    if input is not None and stdin is not None:
        raise ValueError("stdin and input arguments may not both be used.")
    if stdin is not None and stdin not in (subprocess.DEVNULL, subprocess.PIPE):
        input = os.read(stdin, 1 << 30) if isinstance(stdin, int) else stdin.read()
        if isinstance(input, str) and not text:
            input = input.encode(encoding or "utf-8", errors or "strict")
    if input is not None:
        if isinstance(input, str):
            if not text:
                raise TypeError("corral: input must be bytes unless text=True (as subprocess)")
            data = input.encode(encoding or "utf-8", errors or "strict")
        else:
            data = bytes(input)
        try:
            params["stdin"] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("corral: input is not valid UTF-8; the daemon's protocol carries "
                             "text only (pass binary data through a file instead)") from None
        if "\0" in params["stdin"]:
            raise ValueError("corral: input holds a NUL byte, which the daemon refuses "
                             "(pass binary data through a file instead)")

    if timeout is not None:
        if timeout <= 0:
            # subprocess would start the command and time out at once; a cell needs a positive
            # timeout, so use the smallest one the daemon counts.
            timeout_s = 0.001
        else:
            timeout_s = float(timeout)
        params["timeout_s"] = timeout_s
    for k in ("grace_s", "kill_wait_s", "max_output_bytes", "user", "isolate"):
        if k in limits:
            params[k] = limits[k]
    cell_limits = {k: limits[k] for k in ("memory_bytes", "pids", "cpu_s") if k in limits}
    if cell_limits:
        params["limits"] = cell_limits
    return Plan(args=args, params=params, timeout=timeout, text=text, encoding=encoding,
                errors=errors, stdout=out_mode, stderr="discard" if err_mode == "merge"
                else err_mode, check=check)


def encode_request(method: str, params: Optional[Dict[str, Any]], req_id: int = 1) -> bytes:
    msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        msg["params"] = params
    line = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError(f"corral: the request is {len(line)} bytes; the daemon takes at most "
                         f"{MAX_REQUEST_BYTES} per message (input + environment + argv)")
    return line


def decode_answer(line: bytes, method: str, path: str) -> Any:
    if not line.endswith(b"\n"):  # nothing, or an answer cut short
        raise DaemonGone(f"the corral daemon at {path} closed the connection before answering "
                         f"`{method}` (did it stop or crash?)")
    msg = json.loads(line)
    if "error" in msg:
        e = msg["error"] or {}
        raise rpc_error(int(e.get("code", -32603)), str(e.get("message", "")), method)
    return msg.get("result")


# ---------------------------------------------------------------------------------------------
# Result -> subprocess objects

_FAILED_RE = re.compile(r"^(\w+) `(.*)`: (.*)$", re.S)
_ERRNO_BY_TEXT = {os.strerror(n): n for n in sorted(_errno.errorcode, reverse=True)}


def start_error(result: Result) -> OSError:
    """subprocess raises OSError (FileNotFoundError, PermissionError, ...) when the command
    cannot be started; the daemon says it in a sentence: "exec `prog`: No such file or
    directory"."""
    msg = result.error or "could not start the command"
    m = _FAILED_RE.match(msg)
    if m:
        what, obj, text = m.groups()
        n = _ERRNO_BY_TEXT.get(text)
        if n is not None:
            err = OSError(n, text, obj)  # OSError(errno, ...) picks the subclass
            err.corral_error = msg
            return err
    if result.exit_code == 127:
        return FileNotFoundError(_errno.ENOENT, msg, result.argv[0] if result.argv else None)
    if result.exit_code == 126:
        return PermissionError(_errno.EACCES, msg, result.argv[0] if result.argv else None)
    return OSError(msg)


def _stream_value(data: str, mode, plan: Plan):
    """The captured str as subprocess would give it: bytes, or text with universal newlines."""
    if mode != "capture":
        return None
    if not plan.text:
        return data.encode("utf-8")
    enc = plan.encoding or "utf-8"
    if enc.replace("-", "").replace("_", "").lower() != "utf8":
        data = data.encode("utf-8").decode(enc, plan.errors or "strict")
    return data.replace("\r\n", "\n").replace("\r", "\n")


def _deliver(data: str, mode, inherit_fd: int):
    """stdout=None (inherit), an fd or a file: write what the command printed, after it ended
    (the command itself wrote into the daemon's pipe, not into the caller's fds)."""
    if mode in ("capture", "discard") or not data:
        return
    if mode == "inherit":
        mode = inherit_fd
    if not isinstance(mode, int):
        if isinstance(mode, io.TextIOBase):
            mode.write(data)
            mode.flush()
            return
        try:
            fd = mode.fileno()
        except (AttributeError, OSError, ValueError):
            mode.write(data.encode("utf-8"))
            return
        if hasattr(mode, "flush"):
            mode.flush()
        mode = fd
    view = memoryview(data.encode("utf-8"))
    while view:
        view = view[os.write(mode, view):]


def completed(plan: Plan, result: Result) -> subprocess.CompletedProcess:
    """CompletedProcess, or the exception subprocess.run would raise."""
    if result.state == "failed_to_start":
        raise start_error(result)
    _deliver(result.stdout, plan.stdout, 1)
    _deliver(result.stderr, plan.stderr, 2)
    out = _stream_value(result.stdout, plan.stdout, plan)
    err = _stream_value(result.stderr, plan.stderr, plan)
    if result.state == "timed_out" and plan.timeout is not None:
        # As subprocess.run: TimeoutExpired's output is bytes (or None), even in text mode.
        exc = subprocess.TimeoutExpired(
            plan.args, plan.timeout,
            output=result.stdout.encode("utf-8") if plan.stdout == "capture" and result.stdout
            else None,
            stderr=result.stderr.encode("utf-8") if plan.stderr == "capture" and result.stderr
            else None)
        exc.result = result
        raise exc
    rc = result.returncode
    if rc is None:
        rc = -_signal.SIGKILL
    if plan.check and rc != 0:
        exc = subprocess.CalledProcessError(rc, plan.args, output=out, stderr=err)
        exc.result = result
        raise exc
    cp = subprocess.CompletedProcess(plan.args, rc, out, err)
    cp.result = result
    return cp


def client_timeout_error(plan: Plan) -> subprocess.TimeoutExpired:
    """The daemon did not answer within timeout + grace + kill_wait + margin: the connection is
    closed (which cancels the cell) and the caller gets the timeout it asked for."""
    return subprocess.TimeoutExpired(plan.args, plan.timeout)


def cell_params(args, *, shell=False, cwd=None, env=None, input=None, timeout=None,
                text=False, encoding=None, errors=None, **limits) -> Dict[str, Any]:
    """Cell params for start/submit (no output handling)."""
    return plan_call(args, shell=shell, cwd=cwd, env=env, input=input, timeout=timeout,
                     text=text, encoding=encoding, errors=errors, **limits).params
