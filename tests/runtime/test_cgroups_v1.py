"""What only the v1 hierarchy has: the devices controller files, cpuset initialisation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cais.runtime.cgroups import mode
from tests.runtime.cgroup_helpers import cgroups_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or mode() == "unified", reason="needs root and cgroup v1 controllers"
)

OPEN = (
    "import errno\n"
    "for dev in ('/dev/null', '/dev/zero'):\n"
    "    try:\n"
    "        os.close(os.open(dev, os.O_RDWR))\n"
    "        print(dev, 'ok')\n"
    "    except OSError as e:\n"
    "        print(dev, errno.errorcode[e.errno])\n"
)


def test_devices_deny_blocks_opening(cgroups) -> None:
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]
    m = cgroups.create({"devices": rules})
    assert Path(m.paths["devices"], "devices.list").read_text().split() == ["c", "1:5", "rwm"]
    rc, out, err = cgroups.child(m, OPEN).finish()
    assert rc == 0, err
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"]


def test_devices_single_deny_on_default_allow(cgroups) -> None:
    m = cgroups.create({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"}]})
    rc, out, err = cgroups.child(m, OPEN).finish()
    assert out.splitlines() == ["/dev/null EPERM", "/dev/zero ok"], err


def test_cpuset_is_initialised_from_parents(cgroups) -> None:
    m = cgroups.create({})
    path = m.paths["cpuset"]
    parent = os.path.dirname(path)
    for d in (parent, path):
        assert Path(d, "cpuset.cpus").read_text().strip()
        assert Path(d, "cpuset.mems").read_text().strip()
    m2 = cgroups.create({"cpu": {"cpus": "0", "mems": "0"}}, name="pinned")
    assert Path(m2.paths["cpuset"], "cpuset.cpus").read_text().strip() == "0"
    cgroups.child(m2, "import time; time.sleep(600)\n")


def test_relative_paths_follow_own_cgroup_absolute_from_root(cgroups) -> None:
    from cais.runtime.cgroups.paths import own_cgroups

    m = cgroups.manager()
    own = own_cgroups()["memory"]
    assert m.paths["memory"] == os.path.normpath(f"/sys/fs/cgroup/memory/{own}/{cgroups.parent}/ctr")
