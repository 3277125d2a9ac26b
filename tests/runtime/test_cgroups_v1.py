"""What only v1 does: the devices controller files, cpuset initialisation, refusing a memory limit
below the usage (v2 reclaims and OOM-kills instead)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cais.runtime.cgroups import CgroupError
from tests.runtime.cgroup_helpers import OPEN, cgroups_v1_fixture  # noqa: F401 (fixture)
from tests.wait import wait_for


def test_devices_deny_blocks_opening(cgroups_v1) -> None:
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]
    m = cgroups_v1.create({"devices": rules})
    assert Path(m.paths["devices"], "devices.list").read_text().split() == ["c", "1:5", "rwm"]
    rc, out, err = cgroups_v1.child(m, OPEN).finish()
    assert rc == 0, err
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"]


def test_devices_single_deny_on_default_allow(cgroups_v1) -> None:
    m = cgroups_v1.create(
        {"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}
    )
    rc, out, err = cgroups_v1.child(m, OPEN).finish()
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"], err


def test_cpuset_is_initialised_from_parents(cgroups_v1) -> None:
    m = cgroups_v1.create({})
    path = m.paths["cpuset"]
    parent = os.path.dirname(path)
    for d in (parent, path):
        assert Path(d, "cpuset.cpus").read_text().strip()
        assert Path(d, "cpuset.mems").read_text().strip()
    m2 = cgroups_v1.create({"cpu": {"cpus": "0", "mems": "0"}}, name="pinned")
    assert Path(m2.paths["cpuset"], "cpuset.cpus").read_text().strip() == "0"
    cgroups_v1.child(m2, "import time; time.sleep(600)\n")


def test_cpuset_parent_that_a_concurrent_create_just_made(cgroups_v1) -> None:
    """Two containers created at once under a new parent: the second saw the parent the first had
    just made, still without cpus and mems, and copied them empty (its init: ENOSPC on joining)."""
    m = cgroups_v1.manager()
    parent = os.path.dirname(m.paths["cpuset"])
    os.mkdir(parent)  # the other create's mkdir, before its copy of cpus and mems
    m.create({})
    for d in (parent, m.paths["cpuset"]):
        assert Path(d, "cpuset.cpus").read_text().strip() and Path(d, "cpuset.mems").read_text().strip()
    child = cgroups_v1.child(m, "print(1, flush=True)\n")
    rc, out, err = child.finish()
    assert rc == 0 and out == "1\n", err


def test_relative_paths_follow_own_cgroup_absolute_from_root(cgroups_v1) -> None:
    from cais.runtime.cgroups.paths import own_cgroups

    m = cgroups_v1.manager()
    own = own_cgroups()["memory"]
    assert m.paths["memory"] == os.path.normpath(f"/sys/fs/cgroup/memory/{own}/{cgroups_v1.parent}/ctr")


def test_memory_limit_below_usage_is_a_clear_error(cgroups_v1) -> None:
    m = cgroups_v1.create({})
    child = cgroups_v1.child(
        m, "b = bytearray(32 << 20)\nprint(1, flush=True)\nimport time; time.sleep(600)\n"
    )
    assert child.proc.stdout is not None and child.proc.stdout.readline() == b"1\n"
    with pytest.raises(CgroupError, match="memory limit"):
        m.update({"memory": {"limit": 4 << 20}})


def test_docker_default_device_rules(cgroups_v1) -> None:
    from tests.runtime.test_cgroups_devices import DOCKER_DEFAULT

    m = cgroups_v1.create({"devices": DOCKER_DEFAULT})
    listed = Path(m.paths["devices"], "devices.list").read_text().splitlines()
    assert "c 1:3 rwm" in listed and "c 136:* rwm" in listed and "c *:* m" in listed
    assert not any("10:229" in line for line in listed)


def test_memory_above_memory_plus_swap_is_a_clear_error(cgroups_v1) -> None:
    m = cgroups_v1.create({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    with pytest.raises(CgroupError, match="above the memory\\+swap limit"):
        m.update({"memory": {"limit": 256 << 20}})
    m.update({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    assert m.stats().memory.swap.limit == 512 << 20


def test_device_update_changes_only_the_difference(cgroups_v1) -> None:
    allow = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rw"},
    ]
    m = cgroups_v1.create({"devices": allow})
    listing = Path(m.paths["devices"], "devices.list")
    assert listing.read_text().splitlines() == ["c 1:3 rwm", "c 1:5 rw"]
    m.update(
        {
            "devices": [
                allow[0],
                {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
            ]
        }
    )
    assert sorted(listing.read_text().splitlines()) == ["c 1:3 r", "c 1:5 rwm"]
    rc, out, err = cgroups_v1.child(m, OPEN).finish()
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"], err


def test_warming_the_migration_moves_nothing(cgroups_v1) -> None:
    """warm_migration writes the caller into its own cgroup (taking the migration lock early):
    the caller stays where it was, and the migration that follows still moves its process."""
    from cais.runtime.cgroups.paths import own_cgroups

    m = cgroups_v1.create({})
    before = own_cgroups()
    join = m.warm_migration()
    child = cgroups_v1.child(m, "import time; time.sleep(600)\n")  # manager.add, after the warm-up
    join()
    assert own_cgroups() == before
    assert child.pid in m.pids()


def test_the_primer_migrates_its_process_in_place_while_primed_or_held(cgroups_v1) -> None:
    """MigrationPrimer keeps the migration lock warm with no-op migrations of its own process:
    while primed (until a deadline) or held (until released), never after, never moving it."""
    import time

    from cais.runtime.cgroups.migration import MigrationPrimer, own_procs_v1
    from cais.runtime.cgroups.paths import own_cgroups

    before = own_cgroups()
    primer = MigrationPrimer(own_procs_v1())
    primer.prime(0.3)  # the first one may wait a grace period (longer on a loaded machine)
    wait_for(lambda: primer.migrations >= 2, "a migration at once, then another a few ms later")
    with primer.held():
        held = primer.migrations
        wait_for(lambda: primer.migrations > held, "migrations while held")
    settled = -1

    def idle() -> bool:  # deadline and hold both over: the count stops moving
        nonlocal settled
        count, settled = settled, primer.migrations
        time.sleep(0.1)
        return count == settled == primer.migrations

    wait_for(idle, "the primer to go idle", interval=0)
    assert own_cgroups() == before
    m = cgroups_v1.create({})  # and a real migration still moves a process in
    child = cgroups_v1.child(m, "import time; time.sleep(600)\n")
    assert child.pid in m.pids()


def test_the_primer_does_nothing_without_a_v1_hierarchy_or_a_writable_one(tmp_path: Path) -> None:

    from cais.runtime.cgroups.migration import MigrationPrimer

    nothing = MigrationPrimer(None)  # a v2-only host: the init is cloned into its cgroup
    nothing.prime(1)
    with nothing.held():
        pass
    assert nothing._thread is None
    unwritable = MigrationPrimer(str(tmp_path / "missing" / "cgroup.procs"))  # caisd in a container
    unwritable.prime(1)
    wait_for(lambda: unwritable._thread is None, "the primer to give up")
    assert unwritable.migrations == 0
