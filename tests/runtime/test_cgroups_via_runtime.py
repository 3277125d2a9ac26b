"""linux.resources through cais-runtime: pause/resume, ps, update, kill --all, limits that bite."""

from __future__ import annotations

import json
import os
import time

from tests.runtime.bundle import Runtime, read


def _frozen(pid: int) -> bool:
    return read(f"/proc/{pid}/status").split("State:\t")[1][0] in ("D", "T") or "frozen" in read(
        f"/proc/{pid}/cgroup"
    )


def test_pause_resume_ps_kill_all(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "sleep 30 & sleep 30 & wait")
    cid = rt.create(b)
    assert rt("start", cid).returncode == 0
    deadline = time.monotonic() + 10
    while len(json.loads(rt("ps", "--format", "json", cid, check=True).stdout)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(rt("ps", "--format", "json", cid).stdout)
    assert rt.state(cid)["pid"] in pids
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    assert rt("resume", cid).returncode == 1
    assert rt("kill", "--all", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}/cmdline") and read(f"/proc/{p}/cmdline") for p in pids):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rt("delete", cid).returncode == 0


def test_pids_limit_stops_fork_loop(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all-forked")
    b.config["linux"]["resources"]["pids"] = {"limit": 10}
    done = rt.run(b)
    assert "all-forked" not in done.stdout and "fork" in done.stderr


def test_memory_limit_oom_kills(rt: Runtime) -> None:
    b = rt.bundle(
        "sh",
        "-c",
        "dd if=/dev/zero bs=1M count=200 | (read -r -n 1 -d '' x; sleep 0.1); "
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    )
    b.config["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    done = rt.run(b)
    assert "survived" not in done.stdout


def test_update_changes_limits(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("sleep", "30"))
    assert rt("update", "--pids-limit", "7", cid).returncode == 0
    config = json.loads(read(os.path.join(rt.root, cid, "state.json")))["config"]
    assert config["linux"]["resources"]["pids"]["limit"] == 7
    assert rt("update", "--memory", "64m", cid).returncode == 0
    config = json.loads(read(os.path.join(rt.root, cid, "state.json")))["config"]
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert rt("kill", cid, "SIGRTMIN+3").returncode == 0  # systemd's stop signal parses
    bad = rt("update", "--pids-limit", "many", cid)
    assert bad.returncode == 1 and "not a number" in bad.stderr
