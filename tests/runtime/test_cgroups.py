"""The cgroups layer on the host's own hierarchy, with real processes (v1 here; v2 in the guest).

Every test runs twice through the ``cgroups`` fixture: on v1 and, marked ``cgroup2``, on a v2
hierarchy with controllers (skipped here; scripts/vm-test runs it in a guest). Children run in
``cais-cg-test-<random>/ctr`` (relative, so placed from this process's own cgroup, as runc
places relative paths) and it is all removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest

from cais.runtime.cgroups import CgroupError, load_manager, mode
from tests.runtime.cgroup_helpers import cgroups_fixture  # noqa: F401 (fixture)
from tests.wait import wait_for

BUSY = "while True: pass\n"
SLEEP = "import time; time.sleep(600)\n"


def test_mode_is_detected() -> None:
    assert mode() in ("legacy", "hybrid", "unified")


def test_create_add_destroy_leaves_nothing(cgroups) -> None:
    m = cgroups.create({})
    child = cgroups.child(m, SLEEP)
    assert m.pids() == [child.pid]
    assert all(os.path.isdir(p) for p in m.paths.values())
    child.stop()
    m.destroy()
    assert not m.exists()
    assert not any(os.path.exists(p) for p in m.paths.values())


def test_memory_limit_oom_kills_and_is_counted(cgroups) -> None:
    limit = 48 << 20
    m = cgroups.create({"memory": {"limit": limit, "swap": limit}})
    assert m.oom_kills() == 0
    child = cgroups.child(m, "b = []\nwhile True: b.append(bytearray(1 << 20))\n")
    rc, _, _ = child.finish()
    assert rc == -signal.SIGKILL
    assert m.oom_kills() >= 1
    stats = m.stats()
    assert stats.memory.usage.limit == limit
    assert stats.memory.usage.max >= limit - (8 << 20)


def test_pids_limit_stops_a_fork_loop(cgroups) -> None:
    m = cgroups.create({"pids": {"limit": 8}})
    code = (
        "r, w = os.pipe()\n"
        "made = 0\n"
        "for _ in range(30):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except BlockingIOError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        os.close(w); os.read(r, 1); os._exit(0)\n"
        "    made += 1\n"
        "print(made, flush=True)\n"
    )
    child = cgroups.child(m, code)
    rc, out, err = child.finish()
    assert rc == 0, err
    assert int(out) == 7  # the parent is the 8th task
    assert m.stats().pids.limit == 8


def test_cpu_quota_throttles_a_busy_loop(cgroups) -> None:
    m = cgroups.create({"cpu": {"quota": 10000, "period": 100000, "shares": 512}})
    cgroups.child(m, BUSY)
    # The throttled time is added when a throttled period ends: wait for both counters.
    wait_for(
        lambda: m.stats().cpu.throttled_periods > 1 and m.stats().cpu.throttled_time > 0,
        "cpu.stat to count throttled periods and time",
    )
    stats = m.stats()
    assert stats.cpu.throttling_periods >= stats.cpu.throttled_periods > 1
    assert stats.cpu.usage_total > 0


def test_freeze_and_thaw(cgroups) -> None:
    m = cgroups.create({})
    child = cgroups.child(m, BUSY)
    wait_for(lambda: child.state() == "R", "the busy loop to run")
    m.freeze()
    assert m.frozen()
    assert child.state() != "R"  # v1: D (frozen), v2: S (stopped in the freezer trap)
    m.thaw()
    assert not m.frozen()
    wait_for(lambda: child.state() == "R", "the busy loop to run again")


def test_kill_signals_every_process(cgroups) -> None:
    m = cgroups.create({})
    code = "import time\nfor _ in range(3):\n    os.fork()\ntime.sleep(600)\n"
    child = cgroups.child(m, code)
    wait_for(lambda: len(m.pids()) == 8, "eight processes")
    m.kill(signal.SIGKILL)
    rc, _, _ = child.finish()
    assert rc == -signal.SIGKILL
    wait_for(lambda: m.pids() == [], "the forked processes to die")
    m.destroy()
    assert not m.exists()


def test_update_changes_limits_live(cgroups) -> None:
    m = cgroups.create(
        {"pids": {"limit": 10}, "memory": {"limit": 64 << 20}, "cpu": {"quota": 20000, "period": 100000}}
    )
    cgroups.child(m, SLEEP)
    m.update(
        {"pids": {"limit": 20}, "memory": {"limit": 128 << 20, "swap": 256 << 20}, "cpu": {"quota": 50000}}
    )
    stats = m.stats()
    assert stats.pids.limit == 20
    assert stats.memory.usage.limit == 128 << 20
    m.update({"pids": {"limit": -1}, "memory": {"limit": -1}})
    stats = m.stats()
    assert stats.pids.limit == 0
    assert stats.memory.usage.limit > 1 << 50


def test_stats_are_non_zero(cgroups) -> None:
    m = cgroups.create({"memory": {"limit": 256 << 20}, "pids": {"limit": 50}})
    code = "b = bytearray(16 << 20)\nx = 0\nfor i in range(3_000_000): x += i\nprint(x, flush=True)\nimport time; time.sleep(600)\n"
    child = cgroups.child(m, code)
    assert child.proc.stdout is not None and child.proc.stdout.readline()
    stats = m.stats()
    assert stats.cpu.usage_total > 0
    assert stats.cpu.usage_user + stats.cpu.usage_kernel > 0
    assert stats.memory.usage.usage >= 16 << 20
    assert stats.memory.usage.limit == 256 << 20
    assert stats.pids.current == 1
    assert stats.pids.limit == 50
    data = stats.to_runc()
    assert data["memory"]["usage"]["limit"] == 256 << 20
    assert data["pids"] == {"current": 1, "limit": 50}


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"memory": {"limit": "lots"}}, "memory.limit: expected an integer"),
        ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "below the memory limit"),
        ({"cpu": {"cpus": "zero"}}, "cpu.cpus"),
        ({"pids": []}, "pids: expected an object"),
        ({"blockIO": {"weight": 5}}, "outside 10-1000"),
        ({"devices": [{"allow": True, "type": "x"}]}, "devices\\[0\\].type"),
        ({"hugepageLimits": [{"pageSize": "huge", "limit": 1}]}, "pageSize"),
        ({"cpu": {"shares": 1 << 40}}, "cpu-shares|cpu.shares|Invalid|cpu.weight"),
    ],
)
def test_bad_resources_are_a_clear_error_and_leave_nothing(cgroups, resources, message) -> None:
    m = cgroups.manager()
    with pytest.raises(CgroupError, match=message):
        m.create(resources)
    assert not m.exists()


def test_destroy_removes_nested_cgroups(cgroups) -> None:
    """A container that manages its own sub-cgroups (cgroup namespace) leaves nothing either."""
    m = cgroups.create({"pids": {"limit": 20}})
    child = cgroups.child(m, SLEEP)
    for path in set(m.paths.values()):
        os.makedirs(os.path.join(path, "inner", "deeper"))
    inner = load_manager({k: os.path.join(p, "inner", "deeper") for k, p in m.paths.items()})
    if m.version == 1:
        cpuset = inner.paths.get("cpuset")
        if cpuset:  # a v1 cpuset is empty until given cpus and mems
            for level in (os.path.dirname(cpuset), cpuset):
                for key in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(os.path.dirname(level), key)) as src:
                        value = src.read().strip()
                    with open(os.path.join(level, key), "w") as dst:
                        dst.write(value)
    inner.add(child.pid)
    assert m.pids() == [child.pid]
    m.kill()
    child.finish()
    m.destroy()
    assert not m.exists()


def test_reopened_from_saved_paths(cgroups) -> None:
    m = cgroups.create({"pids": {"limit": 5}})
    again = load_manager(m.paths)
    assert again.version == m.version
    assert again.stats().pids.limit == 5


def test_create_refuses_an_existing_cgroup_with_processes(cgroups) -> None:
    """A cgroup it made is new, hence empty (no check); one that was there must be empty."""
    m = cgroups.create({})
    child = cgroups.child(m, SLEEP)
    again = cgroups.manager()  # the same paths, already there, a process in them
    with pytest.raises(CgroupError, match="already has processes"):
        again.create({})
    assert m.pids() == [child.pid]  # and the failed create left it alone


def test_signal_to_a_paused_cgroup_keeps_it_paused_but_sigkill_kills(cgroups) -> None:
    m = cgroups.create({})
    code = "import signal, time\nsignal.signal(signal.SIGUSR1, signal.SIG_IGN)\nprint(1, flush=True)\ntime.sleep(600)\n"
    child = cgroups.child(m, code)
    assert child.proc.stdout is not None and child.proc.stdout.readline() == b"1\n"
    m.freeze()
    m.kill(signal.SIGUSR1)
    assert m.frozen()
    m.kill(signal.SIGKILL)
    assert child.finish()[0] == -signal.SIGKILL


def test_stats_of_a_removed_cgroup_is_a_clear_error(cgroups) -> None:
    m = cgroups.create({})
    m.destroy()
    with pytest.raises(CgroupError, match="does not exist"):
        m.stats()
    m.destroy()  # twice is fine


def test_io_throttle_and_stats(cgroups) -> None:
    """O_DIRECT writes are counted per device; a (generous) write throttle is set on that disk.

    In the vm-test guest the writes go to its empty scratch disk (CAIS_VM_DISK); here to a file
    in /var/tmp, and the throttle only when that file system sits on a whole disk.
    """
    scratch = tempfile.mkdtemp(prefix="cais-cg-test-", dir="/var/tmp")
    try:
        disk = os.environ.get("CAIS_VM_DISK")
        if disk:
            target, dev = disk, os.stat(disk).st_rdev
        else:
            target, dev = os.path.join(scratch, "data"), os.stat(scratch).st_dev
            if os.major(dev) == 0:
                pytest.skip("/var/tmp is not on a block device here")
        major, minor = os.major(dev), os.minor(dev)
        whole_disk = not os.path.exists(f"/sys/dev/block/{major}:{minor}/partition")
        throttle = [{"major": major, "minor": minor, "rate": 1 << 30}] if whole_disk else []
        m = cgroups.create({"blockIO": {"throttleWriteBpsDevice": throttle}} if throttle else {})
        if throttle:
            if m.version == 1:
                with open(os.path.join(m.paths["blkio"], "blkio.throttle.write_bps_device")) as f:
                    assert f.read().split() == [f"{major}:{minor}", str(1 << 30)]
            else:
                with open(os.path.join(m.paths[""], "io.max")) as f:
                    assert f"{major}:{minor} rbps=max wbps={1 << 30} riops=max wiops=max" in f.read()
        code = (
            "import mmap\n"
            f"fd = os.open({target!r}, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)\n"
            "buf = mmap.mmap(-1, 1 << 20)\nbuf.write(b'x' * (1 << 20))\n"
            "for _ in range(4): os.write(fd, buf)\n"
            "os.fsync(fd)\n"
        )
        rc, _, err = cgroups.child(m, code).finish()
        if rc != 0 and "Invalid argument" in err:
            pytest.skip("this file system refuses O_DIRECT")
        assert rc == 0, err
        blkio = m.stats().blkio
        assert sum(e.value for e in blkio.io_service_bytes_recursive if e.op == "Write") >= 4 << 20
        assert sum(e.value for e in blkio.io_serviced_recursive if e.op == "Write") >= 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_systemd_path_lands_where_systemd_would_put_the_unit(cgroups) -> None:
    slice_name = f"caiscg{cgroups.parent[-8:]}.slice"
    m = cgroups.manager(f"{slice_name}:cais:ctr1", systemd=True)
    m.create({"pids": {"limit": 9}})
    assert all(p.endswith(f"/{slice_name}/cais-ctr1.scope") for p in m.paths.values())
    assert m.stats().pids.limit == 9


def test_hugetlb_without_the_controller_is_a_clear_error(cgroups) -> None:
    m = cgroups.manager()
    if m.version == 1 and "hugetlb" in m.paths or m.version == 2:
        pytest.skip("this hierarchy has the hugetlb controller")
    with pytest.raises(CgroupError, match="hugetlb cgroup controller is not mounted"):
        m.create({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})
    assert not m.exists()


def test_check_before_update_refuses_a_limit_below_usage(cgroups) -> None:
    m = cgroups.create({})
    child = cgroups.child(m, "b = bytearray(32 << 20)\nprint(1, flush=True)\nimport time; time.sleep(600)\n")
    assert child.proc.stdout is not None and child.proc.stdout.readline() == b"1\n"
    with pytest.raises(CgroupError, match="already uses"):
        m.update({"memory": {"limit": 4 << 20, "checkBeforeUpdate": True}})
    assert child.proc.poll() is None
