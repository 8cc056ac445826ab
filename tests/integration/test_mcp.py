"""`corral mcp` at the wire level: raw newline-delimited JSON-RPC on the real binary's stdio.
The SDK-level behaviour (tools, cancellation, concurrency) is tested with the official client in
tests/mcp/; here: malformed input, ordering rules, size limits, signals, odd stdin/stdout."""

import json
import os
import select
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import CORRAL, ignored_signals, procs_with_env, wait_until

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}


class Server:
    """One `corral mcp` process; every stdout line must be a JSON-RPC message."""

    def __init__(self, *args, cwd=None, preexec_fn=None):
        self.proc = subprocess.Popen([CORRAL, "mcp", "--grace", "300ms", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd,
                                     preexec_fn=preexec_fn)
        self.buf = b""

    def send_raw(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_raw(json.dumps(msg).encode() + b"\n")

    def recv(self, timeout=10.0):
        """The next message from stdout, parsed; fails on anything that is not JSON."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no message from the server within %ss" % timeout)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise AssertionError("server closed stdout")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, id, method, params=None):
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv()

    def tool(self, id, name, arguments):
        return self.call(id, "tools/call", {"name": name, "arguments": arguments})

    def initialize(self):
        r = self.call(0, "initialize", INIT["params"])
        assert r["result"]["protocolVersion"] == "2025-06-18"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    assert s.close() == 0


def test_initialize_echoes_a_known_version_and_offers_the_latest_otherwise():
    for asked, got in [("2025-06-18", "2025-06-18"), ("2024-11-05", "2024-11-05"),
                       ("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-11-25")]:
        s = Server()
        try:
            r = s.call(1, "initialize", dict(INIT["params"], protocolVersion=asked))
            assert r["result"]["protocolVersion"] == got
            assert "tools" in r["result"]["capabilities"]
            assert r["result"]["serverInfo"]["name"] == "corral"
        finally:
            assert s.close() == 0


def test_commands_start_with_default_signals_whatever_the_host_ignored():
    """An MCP host that started us with SIGINT and SIGQUIT ignored (a shell's `&`) must not hand
    that on to the agent's commands."""
    s = Server(preexec_fn=lambda: [signal.signal(n, signal.SIG_IGN)
                                   for n in (signal.SIGINT, signal.SIGQUIT)])
    try:
        s.initialize()
        r = s.tool(1, "run_command", {"command": "cat /proc/self/status"})
        assert ignored_signals(r["result"]["structuredContent"]["stdout"]) == set(), r
    finally:
        assert s.close() == 0


def test_initialize_without_a_version_is_invalid_params(server):
    r = server.call(1, "initialize", {"capabilities": {}})
    assert r["error"]["code"] == -32602
    assert "protocolVersion" in r["error"]["message"]


def test_requests_before_initialize_are_refused_but_ping_works(server):
    r = server.call(1, "tools/list")
    assert r["id"] == 1 and r["error"]["code"] == -32600
    assert "initialize" in r["error"]["message"]
    assert server.call(2, "ping") == {"jsonrpc": "2.0", "id": 2, "result": {}}
    server.initialize()
    assert "tools" in server.call(3, "tools/list")["result"]


def test_second_initialize_is_refused(server):
    server.initialize()
    assert server.call(5, "initialize", INIT["params"])["error"]["code"] == -32600


def test_malformed_lines_get_errors_and_the_server_carries_on(server):
    server.initialize()
    cases = [
        (b"{not json\n", -32700),
        (b"\xff\xfe\n", -32700),
        (b'"a string"\n', -32600),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]\n', -32600),
        (b'{"id":1,"method":"ping"}\n', -32600),
        (b'{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}\n', -32600),
        (b'{"jsonrpc":"2.0","id":7,"method":"ping","params":5}\n', -32600),
        (b"[" * 1000 + b"]" * 1000 + b"\n", -32700),
    ]
    for line, code in cases:
        server.send_raw(line)
        r = server.recv()
        assert r["error"]["code"] == code, (line[:40], r)
    assert server.call(9, "ping")["result"] == {}


def test_unknown_methods_and_tools(server):
    server.initialize()
    r = server.call(1, "resources/list")
    assert r["error"]["code"] == -32601
    # An unknown notification and a stray response get no answer at all: the next line is the
    # answer to the ping that follows them.
    server.send({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {}})
    server.send({"jsonrpc": "2.0", "id": 77, "result": {}})
    server.send({"jsonrpc": "2.0", "id": 78, "error": {"code": 1, "message": "x"}})
    assert server.call(2, "ping")["id"] == 2
    r = server.call(3, "tools/call", {"name": "rm_rf", "arguments": {}})
    assert r["error"]["code"] == -32602 and "rm_rf" in r["error"]["message"]
    r = server.call(4, "tools/call", {"arguments": {}})
    assert r["error"]["code"] == -32602
    r = server.call(5, "tools/call", {"name": "run_command", "arguments": [1]})
    assert r["error"]["code"] == -32602


def test_an_oversized_line_is_refused_without_ending_the_session(server):
    server.initialize()
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "run_command",
                                 "arguments": {"command": "true", "stdin": "x" * (5 << 20)}}})
    server.send_raw(big.encode() + b"\n")
    r = server.recv()
    assert r["id"] is None and r["error"]["code"] == -32600
    assert "larger than" in r["error"]["message"]
    r = server.tool(2, "run_command", {"command": "echo ok"})
    assert r["result"]["structuredContent"]["stdout"] == "ok\n"


def test_crlf_framing_and_blank_lines_are_accepted(server):
    server.send_raw(json.dumps(INIT).encode() + b"\r\n\r\n")
    assert server.recv()["result"]["protocolVersion"] == "2025-06-18"
    server.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\r\n')
    assert server.recv()["id"] == 1


def test_tool_errors_are_results_with_is_error(server):
    server.initialize()
    r = server.tool(1, "run_command", {"argv": ["a\u0000b"]})
    assert r["result"]["isError"] is True
    r = server.tool(2, "run_command", {"command": "true", "env": {"A=B": "c"}})
    assert r["result"]["isError"] is True
    r = server.tool(3, "run_command", {"command": "true", "max_output_bytes": 1 << 30})
    assert r["result"]["isError"] is True and "--max-output" in r["result"]["content"][0]["text"]


def test_output_is_bounded_and_invalid_utf8_stays_valid_json(server):
    server.initialize()
    r = server.tool(1, "run_command", {"command": "head -c 100000 /dev/zero | tr '\\0' a",
                                       "max_output_bytes": 1000})
    s = r["result"]["structuredContent"]
    assert s["stdout_truncated"] is True and s["stdout_bytes"] == 100000
    assert len(s["stdout"]) == 1000
    r = server.tool(2, "run_command", {"command": "printf 'a\\377b'"})
    assert r["result"]["structuredContent"]["stdout"] == "a\ufffdb"


def test_cancelled_notification_kills_the_tree_and_suppresses_the_answer(server, marker):
    server.initialize()
    server.send({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
                 "params": {"name": "run_command",
                            "arguments": {"command": "setsid sleep 60 & sleep 60",
                                          "env": {"CORRAL_TEST_MARK": marker}}}})
    wait_until(lambda: len(procs_with_env(marker)) >= 2, what="the command to start")
    server.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                 "params": {"requestId": "long", "reason": "user"}})
    wait_until(lambda: not procs_with_env(marker), timeout=5, what="the tree to go")
    # No answer for "long": the next message is the ping's.
    assert server.call(1, "ping")["id"] == 1


def test_progress_notifications_carry_the_token():
    s = Server("--progress-interval", "100ms")
    try:
        s.initialize()
        s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "run_command", "arguments": {"command": "sleep 0.5"},
                           "_meta": {"progressToken": "tok"}}})
        progress = []
        while True:
            m = s.recv()
            if m.get("method") == "notifications/progress":
                progress.append(m["params"])
                continue
            assert m["id"] == 1
            break
        assert len(progress) >= 3
        assert all(p["progressToken"] == "tok" for p in progress)
        assert all(b["progress"] > a["progress"] for a, b in zip(progress, progress[1:]))
    finally:
        assert s.close() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_tears_down_every_cell_and_exits_0(sig, marker):
    s = Server()
    try:
        s.initialize()
        r = s.tool(1, "start_command", {"command": "setsid sleep 60 & sleep 60",
                                        "env": {"CORRAL_TEST_MARK": marker}})
        assert r["result"]["structuredContent"]["state"] == "running"
        s.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "run_command",
                           "arguments": {"command": "sleep 60",
                                         "env": {"CORRAL_TEST_MARK": marker}}}})
        wait_until(lambda: len(procs_with_env(marker)) >= 3, what="the commands to start")
        t0 = time.monotonic()
        s.proc.send_signal(sig)
        # The pending call is answered before the server goes.
        r = s.recv()
        assert r["id"] == 2
        assert r["result"]["structuredContent"]["reason"] == "shutdown"
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 3
        assert not procs_with_env(marker)
    finally:
        s.close()


def test_stdin_from_dev_null_and_from_a_regular_file():
    # epoll refuses both; the server reads them without it.
    r = subprocess.run([CORRAL, "mcp"], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
    assert r.returncode == 0 and r.stdout == b""
    with tempfile.TemporaryFile() as f:
        f.write(json.dumps(INIT).encode() + b"\n")
        f.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
        f.write(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}')  # no final newline
        f.seek(0)
        r = subprocess.run([CORRAL, "mcp"], stdin=f, capture_output=True, timeout=10)
    assert r.returncode == 0
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [m["id"] for m in msgs] == [0, 1, 2]
    assert len(msgs[2]["result"]["tools"]) == 6


def test_a_client_that_stops_reading_does_not_block_other_work(marker):
    """Answers pile up unread; the loop keeps running cells and shuts down cleanly."""
    s = Server()
    try:
        s.initialize()
        for i in range(40):
            s.send({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                    "params": {"name": "run_command",
                               "arguments": {"command": "head -c 200000 /dev/zero",
                                             "env": {"CORRAL_TEST_MARK": marker}}}})
        # 40 answers of ~400 KB of JSON each: far more than a pipe holds. Reading them all
        # proves none was lost while the server waited for us.
        ids = set()
        while len(ids) < 40:
            m = s.recv(timeout=30)
            ids.add(m["id"])
        assert ids == set(range(1, 41))
    finally:
        assert s.close() == 0
    assert not procs_with_env(marker)


def test_bad_flags_exit_125():
    for args in (["--max-concurrent", "0"], ["--default-timeout", "5x"], ["--bogus"],
                 ["--allow-cwd", "/nonexistent-dir"], ["--containment", "jail"]):
        r = subprocess.run([CORRAL, "mcp", *args], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
        assert r.returncode == 125, args
        assert r.stdout == b""
    r = subprocess.run([CORRAL, "mcp", "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"mcpServers" in r.stdout


def test_read_output_pages_never_split_a_utf8_character(server, marker):
    server.initialize()
    r = server.tool(1, "start_command", {"command": "printf 'a\\303\\251b'; sleep 60",
                                         "env": {"CORRAL_TEST_MARK": marker}})
    cid = r["result"]["structuredContent"]["id"]

    def page(offset, n):
        return server.tool(2, "read_output", {"id": cid, "offset": offset,
                                               "max_bytes": n})["result"]["structuredContent"]

    wait_until(lambda: page(0, 10)["data"] == "aéb", what="the output")
    p = page(0, 2)  # would end inside é: stops before it
    assert (p["data"], p["next_offset"]) == ("a", 1)
    p = page(1, 1)  # é does not fit in 1 byte: returned whole rather than cut
    assert (p["data"], p["next_offset"]) == ("é", 3)
    p = page(1, 2)
    assert (p["data"], p["next_offset"]) == ("é", 3)
    k = server.tool(3, "kill_command", {"id": cid})["result"]["structuredContent"]
    assert k["done"] and k["result"]["state"] == "cancelled"
    assert not procs_with_env(marker)


def test_ping_is_answered_while_commands_run(server, marker):
    server.initialize()
    server.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                 "params": {"name": "run_command",
                            "arguments": {"command": "sleep 1",
                                          "env": {"CORRAL_TEST_MARK": marker}}}})
    t0 = time.monotonic()
    assert server.call(1, "ping")["id"] == 1
    assert time.monotonic() - t0 < 0.5
    assert server.recv()["id"] == "slow"


def test_fds_and_memory_stay_flat_over_many_calls(server):
    server.initialize()
    pid = server.proc.pid

    def fds():
        return len(os.listdir(f"/proc/{pid}/fd"))

    def rss_kb():
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])

    def burst(first):
        for i in range(300):
            r = server.tool(first + i, "start_command" if i % 2 else "run_command",
                            {"command": "echo x"})
            assert r["result"]["isError"] is False
        wait_until(lambda: server.tool(9999, "list_commands", {})["result"]["structuredContent"]
                   ["running"] == 0, what="the started commands to end")

    # Warm up what is kept by design and bounded: the pool of cell cgroups (at most 4 slots,
    # each keeping its files open) fills once 10 commands overlap. After that, bursts of calls
    # must leave fds and memory where they were.
    for i in range(10):
        server.tool(50 + i, "start_command", {"command": "sleep 0.5"})
    burst(100)
    fds0, rss0 = fds(), rss_kb()
    burst(1000)
    burst(2000)
    assert fds() <= fds0
    assert rss_kb() < rss0 + 4096


def test_profile_isolates_every_command():
    # The workspace profile makes the cwd writable and gives the cell a private /tmp, so the
    # server must not run from under /tmp (where a CI checkout may live): use /var/tmp.
    cwd = tempfile.mkdtemp(prefix="corral-mcp-", dir="/var/tmp")
    s = Server("--profile", "workspace", cwd=cwd)
    try:
        s.initialize()
        r = s.tool(1, "run_command", {"command": "ps -e | wc -l; cat /proc/net/dev | wc -l; "
                                                 "touch /etc/corral-mcp-probe 2>&1 || echo denied"})
        out = r["result"]["structuredContent"]["stdout"].split("\n")
        assert out[0] == "4"        # ps sees sh, ps and wc only (plus its header)
        assert out[1] == "3"        # /proc/net/dev: two header lines and lo
        assert "denied" in out[-2] or "Read-only" in out[-3]
        assert not os.path.exists("/etc/corral-mcp-probe")
    finally:
        assert s.close() == 0
        os.rmdir(cwd)
    r = subprocess.run([CORRAL, "mcp", "--profile", "nonsense"], capture_output=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 125 and b"--profile" in r.stderr


def test_finished_records_and_running_commands_are_bounded_by_the_server_flags(marker):
    """--keep-finished and --max-concurrent are the policy of the Supervisor under the server:
    finished start_commands beyond the newest N are forgotten, a run_command leaves no record,
    and past --max-concurrent a call is refused at once, never queued."""
    s = Server("--keep-finished", "2", "--max-concurrent", "2")
    try:
        s.initialize()
        env = {"CORRAL_TEST_MARK": marker}

        def sc(id, name, args):
            return s.tool(id, name, args)["result"]

        ids = []
        for i in range(3):
            ids.append(sc(i + 1, "start_command", {"command": f"echo {i}",
                                                   "env": env})["structuredContent"]["id"])
            done = sc(10 + i, "wait_command", {"id": ids[-1], "timeout_s": 10})
            assert done["structuredContent"]["done"] is True
        ran = sc(20, "run_command", {"command": "echo ran", "env": env})["structuredContent"]
        listed = sc(21, "list_commands", {})["structuredContent"]
        assert [c["id"] for c in listed["commands"]] == ids[1:]
        assert all(c["background"] and c["state"] == "exited" for c in listed["commands"])
        assert listed["running"] == 0 and listed["max_concurrent"] == 2
        for i, gone in enumerate([ids[0], ran["id"]]):
            r = sc(30 + i, "wait_command", {"id": gone})
            assert r["isError"] is True and "kept for the last 2" in r["content"][0]["text"]
        assert sc(32, "read_output", {"id": ids[0]})["isError"] is True
        assert sc(33, "read_output", {"id": ids[2]})["structuredContent"]["data"] == "2\n"

        busy = [sc(40 + i, "start_command", {"command": "sleep 60", "env": env})
                ["structuredContent"]["id"] for i in range(2)]
        for i, name in enumerate(["run_command", "start_command"]):
            r = sc(50 + i, name, {"command": "true", "env": env})
            assert r["isError"] is True
            assert "too many commands running (2" in r["content"][0]["text"]
        listed = sc(52, "list_commands", {})["structuredContent"]
        assert listed["running"] == 2
        assert {c["id"] for c in listed["commands"] if c["state"] == "running"} == set(busy)
        for i, cid in enumerate(busy):
            assert sc(60 + i, "kill_command", {"id": cid})["structuredContent"]["done"] is True
        assert sc(70, "run_command", {"command": "true"})["structuredContent"]["state"] == "exited"
    finally:
        assert s.close() == 0
