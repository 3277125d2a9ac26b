"""What is particular to v2: conversions from the v1-shaped OCI fields, the eBPF device filter,
cgroup.freeze and cgroup.kill. The last three belong to cgroup2 itself, not to a controller, so
they run on this host's empty v2 tree as well as in the vm-test guest."""

from __future__ import annotations

import os
import signal

import pytest

from cais.linux import bpf
from cais.runtime.cgroups import CgroupError
from cais.runtime.cgroups.v2 import blkio_to_io_weight, shares_to_weight, swap_to_v2
from tests.runtime.cgroup_helpers import (  # noqa: F401 (fixtures)
    OPEN,
    cgroups_unified_fixture,
    cgroups_v2_fixture,
)
from tests.wait import wait_for


def test_conversions_match_runc() -> None:
    assert shares_to_weight(0) == 0
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert blkio_to_io_weight(10) == 1
    assert blkio_to_io_weight(500) == 4950
    assert blkio_to_io_weight(1000) == 10000
    assert swap_to_v2(0, 100) is None
    assert swap_to_v2(0, -1) == -1
    assert swap_to_v2(-1, 100) == -1
    assert swap_to_v2(300, 100) == 200
    assert swap_to_v2(100, 100) == 0  # swap equal to memory: no swap
    with pytest.raises(CgroupError, match="needs a memory limit"):
        swap_to_v2(300, 0)


def _device_programs(path: str) -> list[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf.query(fd)
    finally:
        os.close(fd)


def test_device_filter_program_blocks_opening(cgroups_unified) -> None:
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
    ]
    m = cgroups_unified.create({"devices": rules})
    assert len(_device_programs(m.paths[""])) == 1
    rc, out, err = cgroups_unified.child(m, OPEN).finish()
    assert rc == 0, err
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"]  # null: read only


def test_device_filter_is_replaced_on_update(cgroups_unified) -> None:
    m = cgroups_unified.create({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3}]})
    first = _device_programs(m.paths[""])
    m.update({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"}]})
    second = _device_programs(m.paths[""])
    assert len(second) == 1 and second != first
    rc, out, err = cgroups_unified.child(m, OPEN).finish()
    assert out.splitlines() == ["/dev/null ok", "/dev/zero EPERM"], err


def test_freeze_thaw_and_cgroup_kill(cgroups_unified) -> None:
    m = cgroups_unified.create({})
    child = cgroups_unified.child(m, "import time\nos.fork()\nwhile True: pass\n")
    wait_for(lambda: len(m.pids()) == 2, "two processes")
    m.freeze()
    assert m.frozen()
    assert child.state() != "R"
    m.thaw()
    assert not m.frozen()
    m.kill(signal.SIGKILL)
    assert child.finish()[0] == -signal.SIGKILL
    wait_for(lambda: m.pids() == [], "cgroup.kill to kill the forked process")
    m.destroy()
    assert not m.exists()


def test_missing_controller_is_named(cgroups_unified) -> None:
    m = cgroups_unified.manager()
    with pytest.raises(CgroupError, match="the nosuch controller is not available"):
        m.create({"unified": {"nosuch.max": "1"}})
    assert not m.exists()


def test_realtime_is_refused_on_v2(cgroups_unified) -> None:
    m = cgroups_unified.manager()
    with pytest.raises(CgroupError, match="real-time"):
        m.create({"cpu": {"realtimeRuntime": 1000}})
    assert not m.exists()


@pytest.mark.cgroup2
def test_v2_files_written(cgroups_v2) -> None:
    m = cgroups_v2.create(
        {
            "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 16 << 20},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 30},
            "unified": {"memory.high": str(60 << 20)},
        }
    )
    path = m.paths[""]

    def read(name: str) -> str:
        with open(os.path.join(path, name)) as f:
            return f.read().strip()

    assert read("memory.max") == str(64 << 20)
    assert read("memory.low") == str(16 << 20)
    assert read("memory.high") == str(60 << 20)
    if os.path.exists(os.path.join(path, "memory.swap.max")):
        assert read("memory.swap.max") == str(32 << 20)
    assert read("cpu.weight") == "39"
    assert read("cpu.max") == "50000 100000"
    assert read("cpuset.cpus") == "0"
    assert read("pids.max") == "30"
    m.update({"cpu": {"period": 200000}})
    assert read("cpu.max") == "50000 200000"
    m.update({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}], "blockIO": {"weight": 500}})
    assert read("hugetlb.2MB.max") == str(4 << 20)
    if os.path.exists(os.path.join(path, "io.bfq.weight")):
        assert read("io.bfq.weight").split()[:2] == ["default", "500"]
    elif os.path.exists(os.path.join(path, "io.weight")):
        assert read("io.weight").split()[:2] == ["default", "4950"]


def test_delegate_hands_the_cgroup_to_a_user(cgroups_unified) -> None:
    m = cgroups_unified.create({})
    m.delegate(123456, 123457)
    path = m.paths[""]
    for name in (".", "cgroup.procs", "cgroup.subtree_control"):
        st = os.stat(os.path.join(path, name))
        assert (st.st_uid, st.st_gid) == (123456, 123457)
    assert os.stat(os.path.join(path, "cgroup.freeze")).st_uid == 0  # limits stay root's


def test_docker_default_device_program_loads(cgroups_unified) -> None:
    from tests.runtime.test_cgroups_devices import DOCKER_DEFAULT

    rules = [*DOCKER_DEFAULT, {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]
    m = cgroups_unified.create({"devices": rules})
    rc, out, err = cgroups_unified.child(m, OPEN).finish()
    assert out.splitlines() == ["/dev/null ok", "/dev/zero EPERM"], err


def test_a_delegated_user_manages_its_subtree(cgroups_unified) -> None:
    m = cgroups_unified.create({})
    m.delegate(123456, 123456)
    path = m.paths[""]
    code = (
        "os.setgroups([]); os.setgid(123456); os.setuid(123456)\n"
        f"os.mkdir({path!r} + '/sub')\n"
        f"with open({path!r} + '/sub/cgroup.procs', 'w') as f: f.write(str(os.getpid()))\n"
        "try:\n"
        f"    open({path!r} + '/cgroup.freeze', 'w').write('1')\n"
        "except PermissionError:\n"
        "    print('limits refused', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    child = cgroups_unified.child(m, code)
    assert child.proc.stdout is not None and child.proc.stdout.readline() == b"limits refused\n"
    with open(os.path.join(path, "sub", "cgroup.procs")) as f:
        assert f.read().split() == [str(child.pid)]
    m.kill()
    child.finish()
    m.destroy()
    assert not m.exists()
