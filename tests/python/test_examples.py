"""The examples run against a real daemon: the side-by-side demo (its corral half must leave
nothing, its subprocess.run half must show the leaks it exists to show, and both must be cleaned
up), and the LangChain-style shell tool."""

import json
import subprocess
import sys

from pyclient_helpers import ROOT
from pyclient_helpers import daemon, no_zombie_children, sock  # noqa: F401 (fixtures)

sys.path.insert(0, str(ROOT / "examples"))

import langchain_shell_tool  # noqa: E402


def test_agent_demo(sock):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "agent_demo.py"), "--json",
                          "--socket", sock], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    cor, sub = r["corral"], r["subprocess"]
    assert (cor["zombies"], cor["escaped"], cor["escaped_fds"], cor["agent_fds"]) == (0, 0, 0, 0)
    assert cor["outcomes"]["background children"] == {"ok": 10}
    assert sub["zombies"] > 0 and sub["escaped"] >= 20  # what the demo exists to show
    assert sub["peak_mib"] > 2 * cor["peak_mib"]
    assert sub["left_after_cleanup"] == 0 and cor["left_after_cleanup"] == 0


def test_langchain_shell_tool(sock, monkeypatch, tmp_path):
    monkeypatch.setenv("CORRAL_SOCKET", sock)
    out = langchain_shell_tool.run_shell("echo hi; echo oops >&2; exit 3", cwd=str(tmp_path))
    assert out == "hi\n[stderr]\noops\n[exit code 3]"
    out = langchain_shell_tool.run_shell("sleep 300 & echo started")
    assert out == "started\n[exit code 0; 1 background process(es) stopped]"
    out = langchain_shell_tool.run_shell("sleep 60", timeout_s=0.3)
    assert out.startswith("[timed out after 0.3 s")
    out = langchain_shell_tool.run_shell("yes | head -c 200000")
    assert out.endswith("[exit code 0; stdout cut at 65536 of 200000 bytes]")
    monkeypatch.setenv("CORRAL_SOCKET", str(tmp_path / "none.sock"))
    assert "no corral daemon at" in langchain_shell_tool.run_shell("true")
