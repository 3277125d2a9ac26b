"""linux.resources through cais-runtime: pause/resume, ps, update, kill --all, limits that bite."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest

from tests.runtime.bundle import Runtime, read


def _until(condition: Callable[[], bool]) -> None:
    """Poll observable state until it holds: no deadline here, pytest's timeout ends a hang (each
    command may take seconds under emulation, so no time-based verdict)."""
    while not condition():
        time.sleep(0.05)


def _frozen(rt: Runtime, cid: str) -> bool:
    """The container's cgroup as the kernel reports it (v1 freezer.state, v2 cgroup.events)."""
    from cais.runtime.cgroups import load_manager

    return load_manager(json.loads(read(os.path.join(rt.root, cid, "state.json")))["cgroup_paths"]).frozen()


def _ps(rt: Runtime, cid: str) -> list[int]:
    return json.loads(rt("ps", "--format", "json", cid, check=True).stdout)


def _gone(pid: int) -> bool:
    try:
        return not read(f"/proc/{pid}/cmdline")  # a zombie's is empty
    except FileNotFoundError:
        return True


def test_pause_resume_ps_kill_all(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "sleep 100000 & sleep 100000 & wait")  # ended by kill --all below
    cid = rt.create(b)
    assert rt("start", cid).returncode == 0
    _until(lambda: len(_ps(rt, cid)) == 3)
    pids = _ps(rt, cid)
    assert rt.state(cid)["pid"] in pids
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    assert _frozen(rt, cid)
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    assert not _frozen(rt, cid)
    assert rt("resume", cid).returncode == 1
    assert rt("kill", "--all", cid, "KILL").returncode == 0
    _until(lambda: all(_gone(p) for p in pids))
    _until(lambda: rt.state(cid)["status"] == "stopped")
    assert rt("delete", cid).returncode == 0


def test_pids_limit_stops_fork_loop(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all-forked")
    b.config["linux"]["resources"]["pids"] = {"limit": 10}
    done = rt.run(b)
    assert "all-forked" not in done.stdout and "fork" in done.stderr


def test_memory_limit_oom_kills(rt: Runtime) -> None:
    # awk doubles a string until the 32 MiB limit (no swap beyond it) is hit: a few big copies,
    # cheap even under emulation, where piping 100 MB through tr took most of a minute.
    b = rt.bundle("sh", "-c", "awk 'BEGIN { s = \"a\"; while (length(s) < 268435456) s = s s }'; echo awk $?")
    b.config["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    done = rt.run(b)
    assert "awk 137" in done.stdout, done  # SIGKILLed by the OOM killer; the shell lives on


def test_update_changes_limits(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("sleep", "100000"))
    assert rt("update", "--pids-limit", "7", cid).returncode == 0
    config = json.loads(read(os.path.join(rt.root, cid, "state.json")))["config"]
    assert config["linux"]["resources"]["pids"]["limit"] == 7
    assert rt("update", "--memory", "64m", cid).returncode == 0
    config = json.loads(read(os.path.join(rt.root, cid, "state.json")))["config"]
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert rt("kill", cid, "SIGRTMIN+3").returncode == 0  # systemd's stop signal parses
    bad = rt("update", "--pids-limit", "many", cid)
    assert bad.returncode == 1 and "not a number" in bad.stderr


@pytest.mark.cgroup2  # here on v1, and in scripts/vm-test's guest, where relative paths differ
def test_delete_from_another_cgroup_leaves_nothing(rt: Runtime) -> None:
    """An empty cgroupsPath is relative to the caller's cgroup: `create` resolves it and saves the
    result, so a `delete` run from elsewhere removes that cgroup, not one it would resolve itself."""
    from cais.runtime.cgroups import open_manager

    b = rt.bundle("sleep", "1000")
    b.config["linux"].pop("cgroupsPath", None)
    cid = rt.create(b)
    paths = json.loads(read(os.path.join(rt.root, cid, "state.json")))["cgroup_paths"]
    assert paths and all(os.path.isdir(p) for p in paths.values())
    elsewhere = open_manager(f"/cais-r2-{cid}", cid)
    elsewhere.create()
    try:
        assert not set(elsewhere.paths.values()) & set(paths.values())
        for verb in (("start", cid), ("ps", cid), ("pause", cid), ("resume", cid), ("delete", "--force", cid)):
            done = rt(*verb, preexec_fn=lambda: elsewhere.add(os.getpid()))
            assert done.returncode == 0, done.stderr
        assert not [p for p in paths.values() if os.path.exists(p)]
        assert not any(os.path.exists(os.path.join(p, cid)) for p in elsewhere.paths.values())
    finally:
        elsewhere.destroy()


@pytest.mark.cgroup2
def test_events_stats_and_oom(rt: Runtime) -> None:
    """`events --stats` prints runc's stats event; `events` streams stats, then an oom event when
    the container's allocating process is OOM-killed (it waits for a file the test creates once
    events has printed its first stats, so no OOM kill happens before events watches)."""
    import subprocess

    from tests.runtime.bundle import CAIS_RUNTIME

    b = rt.bundle("sh", "-c", "while [ ! -e /go ]; do sleep 0.1; done; "
                  "awk 'BEGIN { s = \"a\"; while (length(s) < 268435456) s = s s }'; sleep 100000")
    b.config["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    b.config["root"]["readonly"] = False
    cid = rt.create(b)
    assert rt("start", cid).returncode == 0
    once = rt("events", "--stats", cid)
    assert once.returncode == 0, once.stderr
    event = json.loads(once.stdout)
    assert event["type"] == "stats" and event["id"] == cid
    assert event["data"]["pids"]["current"] >= 1 and event["data"]["memory"]["usage"]["limit"] == 32 << 20
    watch = subprocess.Popen([CAIS_RUNTIME, "--root", rt.root, "events", "--interval", "1h", cid],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline())["type"] == "stats"
        with open(os.path.join(b.rootfs, "go"), "w"):
            pass
        assert json.loads(watch.stdout.readline()) == {"type": "oom", "id": cid}
    finally:
        watch.kill()
        watch.communicate()
    bad = rt("events", "--interval", "soon", cid)
    assert bad.returncode == 1 and "invalid --interval" in bad.stderr
    assert rt("delete", "--force", cid).returncode == 0
    gone = rt("events", "--stats", cid)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
