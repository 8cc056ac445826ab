"""corral scan against real fixtures: a parent that never waits, a process frozen in D state by
the v1 freezer, a process near a lowered RLIMIT_NOFILE, a pids cgroup near its limit, the fake
NVML library reporting memory for dead and zombie PIDs; and the exporter, checked by promtool
and scraped by a real Prometheus."""

import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import (CORRAL, PAYLOAD, ROOT, corral, proc_state, prometheus_query_until,
                      wait_until, zombie_children)

BUILD = Path(CORRAL).resolve().parent
FAKE_NVML = BUILD / "fake_nvml" / "libnvidia-ml.so.1"
FREEZER = Path("/sys/fs/cgroup/freezer")
PIDS = Path("/sys/fs/cgroup/pids")
# Thresholds so high that only what a test lowers can cross them: other engineers' processes on
# this shared host must not change our exit codes.
QUIET = ["--zombies", "1000000", "--dstate", "1000h", "--fd-ratio", "100", "--pid-ratio", "100",
         "--gpu-orphaned", "1000G"]


def scan_json(*args, env=None, timeout=30):
    r = corral("scan", "--json", *args, env=env, timeout=timeout)
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def stop(p):
    """Kills and reaps a Popen child of the test (by pid, never by name)."""
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)


@pytest.fixture
def env(marker):
    e = dict(os.environ)
    e["CORRAL_TEST_MARK"] = marker
    return e


def test_help_teaches_sections_thresholds_and_exit_status():
    r = corral("scan", "--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for word in ("zombies by parent", "D state", "wchan", "RLIMIT_NOFILE", "pid_max", "NVML",
                 "--serve", "--watch", "exit status", "125", "skipped"):
        assert word in out, word


def test_bad_option_exits_125():
    assert corral("scan", "--bogus").returncode == 125
    # Values that a loose parse would cut, wrap or take as a number: each is refused.
    for flag, value in [("--watch", "soon"), ("--watch", "0"), ("--zombies", "1e12"),
                        ("--zombies", "3x"), ("--top", "1.5"), ("--fd-min", "-1"),
                        ("--fd-ratio", "nan"), ("--dstate", "inf"),
                        ("--gpu-orphaned", "99999999999999999999G")]:
        r = corral("scan", flag, value)
        assert r.returncode == 125, (flag, value)
        assert r.stderr.startswith(f"corral scan: {flag}: '{value}' is not ".encode()), r.stderr


def test_parent_that_never_waits_is_named_with_its_zombie_count(env):
    p = subprocess.Popen([PAYLOAD, "zombies", "7", "+", "sleep", "60"], env=env)
    try:
        wait_until(lambda: len(zombie_children(p.pid)) == 7, what="7 zombies")
        rc, rep = scan_json(*QUIET, "--zombies", "7", env=env)
        mine = [z for z in rep["zombies_by_parent"] if z["pid"] == p.pid]
        assert len(mine) == 1, rep["zombies_by_parent"]
        z = mine[0]
        assert z["zombies"] == 7
        assert z["comm"] == "corral-payload"
        assert "zombies 7 + sleep 60" in z["cmdline"]
        assert f"kill -CHLD {p.pid}" in z["advice"]
        assert 0 <= z["oldest_s"] < 60
        assert rep["zombies"] >= 7
        assert rc == 1 and any(f"PID {p.pid} " in f for f in rep["findings"])
        # Just under the threshold: not a finding, exit 0.
        rc, rep = scan_json(*QUIET, "--zombies", "8", env=env)
        assert rc == 0 and rep["findings"] == [], rep["findings"]
    finally:
        stop(p)


def test_hostile_comm_with_parens_and_spaces_is_parsed(env, tmp_path):
    evil = tmp_path / "ev) Z 1 (il"
    evil.symlink_to(PAYLOAD)
    p = subprocess.Popen([str(evil), "zombies", "2", "+", "sleep", "60"], env=env)
    try:
        wait_until(lambda: len(zombie_children(p.pid)) == 2, what="2 zombies")
        _, rep = scan_json(*QUIET, env=env)
        mine = [z for z in rep["zombies_by_parent"] if z["pid"] == p.pid]
        assert mine and mine[0]["comm"] == "ev) Z 1 (il" and mine[0]["zombies"] == 2
    finally:
        stop(p)


@pytest.fixture
def freezer_cgroup():
    if not (FREEZER / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and the cgroup v1 freezer at /sys/fs/cgroup/freezer")
    cg = FREEZER / f"corral-test-{os.getpid()}-{time.monotonic_ns()}"
    cg.mkdir()
    procs = []
    try:
        yield cg, procs
    finally:
        (cg / "freezer.state").write_text("THAWED")
        for p in procs:
            stop(p)
        wait_until(lambda: not (cg / "cgroup.procs").read_text().split(), what="freezer empty")
        cg.rmdir()


def test_frozen_process_is_reported_in_d_state_with_wchan_and_scan_does_not_hang(
        env, freezer_cgroup):
    cg, procs = freezer_cgroup
    p = subprocess.Popen([PAYLOAD, "sleep", "60"], env=env)
    procs.append(p)
    (cg / "cgroup.procs").write_text(str(p.pid))
    (cg / "freezer.state").write_text("FROZEN")
    wait_until(lambda: (cg / "freezer.state").read_text().strip() == "FROZEN", what="FROZEN")
    wait_until(lambda: proc_state(p.pid) == "D", what="D state")
    t0 = time.monotonic()
    rc, rep = scan_json(*QUIET, "--dstate", "0", env=env, timeout=20)
    assert time.monotonic() - t0 < 10
    mine = [d for d in rep["dstate"] if d["pid"] == p.pid]
    assert mine, rep["dstate"]
    assert mine[0]["wchan"] not in ("", "0"), mine[0]
    assert mine[0]["comm"] == "corral-payload"
    assert mine[0]["since_s"] >= 0
    assert any(s["pid"] == p.pid and "cmdline" in s["what"] for s in rep["skipped"])
    assert rc == 1 and any(f"PID {p.pid} " in f and "D state" in f for f in rep["findings"])


def test_frozen_zombie_parent_cmdline_is_skipped_not_read(env, freezer_cgroup):
    cg, procs = freezer_cgroup
    p = subprocess.Popen([PAYLOAD, "zombies", "3", "+", "sleep", "60"], env=env)
    procs.append(p)
    wait_until(lambda: len(zombie_children(p.pid)) == 3, what="3 zombies")
    (cg / "cgroup.procs").write_text(str(p.pid))
    (cg / "freezer.state").write_text("FROZEN")
    wait_until(lambda: proc_state(p.pid) == "D", what="D state")
    _, rep = scan_json(*QUIET, env=env, timeout=20)
    z = [z for z in rep["zombies_by_parent"] if z["pid"] == p.pid][0]
    assert z["zombies"] == 3 and z["cmdline"] == ""
    assert any(s["pid"] == p.pid and s["what"].startswith("cmdline") for s in rep["skipped"])


def test_process_near_its_lowered_fd_limit_is_reported(env):
    p = subprocess.Popen([PAYLOAD, "open-fds", "90"], env=env)
    try:
        wait_until(lambda: len(os.listdir(f"/proc/{p.pid}/fd")) >= 90, what="90 fds")
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (100, 100))
        rc, rep = scan_json(*QUIET, "--fd-ratio", "0.8", env=env)
        mine = [f for f in rep["fd_pressure"] if f["pid"] == p.pid]
        assert mine, rep["fd_pressure"]
        assert mine[0]["soft_limit"] == 100 and 90 <= mine[0]["open_fds"] <= 100
        assert rc == 1 and any(f"PID {p.pid} " in f for f in rep["findings"])
        # The same process against its untouched hard limit elsewhere: not over 0.99.
        _, rep = scan_json(*QUIET, "--fd-ratio", "0.99", env=env)
        assert not [f for f in rep["fd_pressure"] if f["pid"] == p.pid]
    finally:
        stop(p)


def test_pids_cgroup_near_its_limit_is_reported(env):
    if not (PIDS / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and the cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    name = f"corral-test-{os.getpid()}-{time.monotonic_ns()}"
    cg = PIDS / name
    cg.mkdir()
    p = None
    try:
        (cg / "pids.max").write_text("10")
        # The shell joins the cgroup before exec, so every fork of the payload is counted.
        p = subprocess.Popen(["/bin/sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" "$@"',
                              PAYLOAD, "tree", "7", "60", "+", "sleep", "60"], env=env)
        wait_until(lambda: int((cg / "pids.current").read_text()) == 8, what="8 pids")
        rc, rep = scan_json(*QUIET, "--pid-ratio", "0.8", env=env)
        mine = [c for c in rep["pids"]["cgroups"] if c["path"] == "/" + name]
        assert mine == [{"path": "/" + name, "hierarchy": "v1", "current": 8, "max": 10}]
        assert rep["pids"]["max"] == int(Path("/proc/sys/kernel/pid_max").read_text())
        assert rep["pids"]["used"] >= rep["pids"]["processes"] > 0
        assert rc == 1 and any(name in f for f in rep["findings"])
    finally:
        for pid in (cg / "cgroup.procs").read_text().split():  # ours only: this cgroup is ours
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p is not None:
            p.wait(timeout=10)
        wait_until(lambda: not (cg / "cgroup.procs").read_text().split(), what="cgroup empty")
        cg.rmdir()


def test_fake_nvml_memory_of_dead_and_zombie_pids_is_orphaned(env):
    assert FAKE_NVML.exists(), "build the fake_nvml target"
    dead = subprocess.Popen([PAYLOAD, "exit", "0"])
    dead.wait()
    zombie = subprocess.Popen([PAYLOAD, "exit", "0"])  # not waited for until the end: a zombie
    alive = subprocess.Popen([PAYLOAD, "sleep", "60"], env=env)
    try:
        wait_until(lambda: proc_state(zombie.pid) == "Z", what="zombie")
        e = dict(env, CORRAL_NVML_LIBRARY=str(FAKE_NVML), FAKE_NVML_DEVICES="2",
                 FAKE_NVML_PROCS=f"{dead.pid}:1000,{zombie.pid}:200,{alive.pid}:30@1")
        rc, rep = scan_json(*QUIET[:-2], env=e)
        g = rep["gpu"]
        assert g["available"] and len(g["devices"]) == 2
        states = {p["pid"]: p["state"] for d in g["devices"] for p in d["processes"]}
        assert states == {dead.pid: "dead", zombie.pid: "zombie", alive.pid: "alive"}
        assert g["orphaned_bytes"] == 1200
        assert g["devices"][0]["orphaned_bytes"] == 1200 and g["devices"][0]["used_bytes"] == 1200
        assert g["devices"][1]["orphaned_bytes"] == 0
        assert rc == 1 and any("GPU" in f for f in rep["findings"])
    finally:
        zombie.wait()
        stop(alive)


def test_missing_nvml_library_means_no_gpu_not_an_error():
    rc, rep = scan_json(*QUIET, env={"CORRAL_NVML_LIBRARY": "/nonexistent/libnvidia-ml.so.1"})
    assert rc == 0
    assert rep["gpu"]["available"] is False and "no GPU" in rep["gpu"]["status"]


def test_hung_nvml_is_skipped_within_the_deadline():
    e = {"CORRAL_NVML_LIBRARY": str(FAKE_NVML), "FAKE_NVML_HANG_MS": "20000"}
    t0 = time.monotonic()
    rc, rep = scan_json(*QUIET, env=e, timeout=15)
    assert time.monotonic() - t0 < 8
    assert rep["gpu"]["available"] is False
    assert any("NVML" in s["what"] for s in rep["skipped"])


def test_watch_json_prints_one_object_per_refresh():
    p = subprocess.Popen([CORRAL, "scan", "--json", "--watch", "200ms", "--no-gpu"],
                         stdout=subprocess.PIPE)
    try:
        lines = [p.stdout.readline() for _ in range(3)]
        assert all(json.loads(line)["pids"]["max"] > 0 for line in lines)
    finally:
        stop(p)
        p.stdout.close()


# --- The exporter ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def exporter(env):
    """`corral scan --serve 127.0.0.1:0` with a parent holding 4 zombies; yields (addr, ppid)."""
    z = subprocess.Popen([PAYLOAD, "zombies", "4", "+", "sleep", "120"], env=env)
    wait_until(lambda: len(zombie_children(z.pid)) == 4, what="4 zombies")
    e = dict(env, CORRAL_NVML_LIBRARY=str(FAKE_NVML), FAKE_NVML_PROCS="4000000:4096")
    p = subprocess.Popen([CORRAL, "scan", "--serve", "127.0.0.1:0", "--interval", "1s"],
                         stderr=subprocess.PIPE, env=e)
    try:
        line = p.stderr.readline().decode()
        assert "serving metrics on http://" in line, line
        addr = line.split("http://")[1].split("/")[0]
        yield addr, z.pid, p
    finally:
        stop(z)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=10) == 0
        p.stderr.close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None, ""


def test_exporter_serves_host_gauges_that_promtool_accepts(exporter):
    addr, zpid, _ = exporter
    code, ctype, body = get(f"http://{addr}/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert f'corral_host_zombies_by_parent{{pid="{zpid}",comm="corral-payload"}} 4' in body
    for name in ("corral_host_zombies", "corral_host_dstate_processes", "corral_host_pids_used",
                 "corral_host_pid_max", "corral_host_gpu_orphaned_bytes"):
        assert f"\n{name} " in body, name
    assert "\ncorral_host_gpu_orphaned_bytes 4096\n" in body
    assert get(f"http://{addr}/nope")[0] == 404
    r = subprocess.run(["promtool", "check", "metrics"], input=body.encode(), capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_exporter_refreshes_on_its_cadence_not_per_scrape(exporter):
    addr, _, _ = exporter

    def scans():
        body = get(f"http://{addr}/metrics")[2]
        return int(body.split("\ncorral_host_scans_total ")[1].split()[0])

    first = scans()
    assert all(scans() <= first + 1 for _ in range(20))  # 20 scrapes in well under 1 s
    wait_until(lambda: scans() >= first + 2, timeout=10, what="two more scans")


def test_real_prometheus_scrapes_the_exporter(exporter):
    addr, zpid, _ = exporter
    res = prometheus_query_until(addr, f'corral_host_zombies_by_parent{{pid="{zpid}"}}',
                                 lambda res: True)
    assert res[0]["metric"]["comm"] == "corral-payload" and res[0]["value"][1] == "4"


# --- Alert rules and dashboard --------------------------------------------------------------

def test_alert_rules_pass_promtool_unit_tests():
    rules = ROOT / "deploy" / "prometheus"
    r = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=rules,
                       capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    r = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=rules,
                       capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_every_alert_has_a_runbook_and_dashboard_uses_exported_metrics():
    import re
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert text.count("- alert:") == text.count("runbook:") >= 7
    dash = json.loads((ROOT / "deploy" / "grafana" / "corral.json").read_text())
    exprs = json.dumps(dash)
    names = set(re.findall(r"corral_host_[a-z_]+", exprs))
    assert names
    src = (ROOT / "src" / "api" / "metrics_scan.cc").read_text()
    for n in names:
        assert f'"{n}"' in src, n
