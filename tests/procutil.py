"""/proc helpers shared by the integration tests (tests/integration) and the Python client's
tests (tests/python): a plain module, not a conftest, so both suites can import it when pytest
runs them in one invocation."""

import os
import signal
import time

# A suite started from a non-interactive shell's `&` (a CI harness, a script) inherits SIGINT and
# SIGQUIT ignored, and every process a test starts would inherit that too: the tests that check a
# forwarded SIGINT kills the tree would see it ignored. Python's own Ctrl-C handler for this
# process; its children start with the default disposition.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _sig in (signal.SIGQUIT, signal.SIGHUP):  # SIGHUP: a suite started under `nohup`
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it is truthy or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def procs_with_env(marker):
    """PIDs of live (non-zombie) processes whose environment contains marker."""
    found = []
    needle = marker.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            state = stat[stat.rfind(b")") + 2:][:1]
            if state == b"Z":
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read():
                    found.append(int(d))
        except OSError:
            continue
    return found


def ignored_signals(status):
    """The signal numbers a /proc/PID/status text says are ignored (its SigIgn mask)."""
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask >> (n - 1) & 1}
    raise ValueError("no SigIgn line in the status text")


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first), None once pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def proc_state(pid):
    """The state letter of /proc/PID/stat ("R", "S", "D", "Z", "T"...), None once pid is gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def parent_of(pid):
    """The parent's pid, None once pid is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def zombie_children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        if rest[0] == b"Z" and int(rest[1]) == ppid:
            out.append(int(d))
    return out


def links(directory):
    """{name: target} of the symlinks in a /proc directory (fd/, task/N/ns/): an entry that goes
    between the listing and its readlink (an fd closed, a thread ended) is left out, not an
    error."""
    out = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:  # the process or thread itself has gone
        return out
    for name in names:
        try:
            out[name] = os.readlink(f"{directory}/{name}")
        except FileNotFoundError:
            continue
    return out
