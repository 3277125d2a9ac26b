"""Shared pieces of the cgroups tests: real child processes in throw-away cgroups.

Test modules import the fixtures they use (``from tests.runtime.cgroup_helpers import
cgroups_fixture``): ``cgroups`` runs a test on v1 and, marked ``cgroup2``, on a v2 hierarchy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from cais.runtime.cgroups import Manager, mode
from cais.runtime.cgroups.errors import CgroupError
from cais.runtime.cgroups.paths import cgroup_mounts, inner_path
from cais.runtime.cgroups.v1 import V1Manager
from cais.runtime.cgroups.v2 import V2Manager

# A child that opens /dev/null and /dev/zero read-write and says what happened.
OPEN = (
    "import errno\n"
    "for dev in ('/dev/null', '/dev/zero'):\n"
    "    try:\n"
    "        os.close(os.open(dev, os.O_RDWR))\n"
    "        print(dev, 'ok')\n"
    "    except OSError as e:\n"
    "        print(dev, errno.errorcode[e.errno])\n"
)


def parent_name() -> str:
    """A fresh relative parent: ``cais-cg-test-<random>``."""
    return f"cais-cg-test-{secrets.token_hex(4)}"


class Child:
    """A Python child held at a gate until it is in the cgroup, then running ``code``."""

    def __init__(self, manager: Manager, code: str) -> None:
        gate = "import os; os.read(0, 1)\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", gate + code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.pid = self.proc.pid
        try:
            manager.add(self.pid)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"g")
        self.proc.stdin.flush()

    def state(self) -> str:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
        raise AssertionError("no State line")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def cleanup(managers: list[Manager], children: list[Child], parents: set[str]) -> None:
    """Kill what the test started, remove its cgroups and their temporary parents.

    Thawed first: a frozen v1 process does not die of SIGKILL until it is thawed.
    """
    for m in managers:
        with contextlib.suppress(CgroupError):
            if m.exists() and m.frozen():
                m.thaw()
    for child in children:
        child.stop()
    for m in managers:
        with contextlib.suppress(CgroupError):
            if m.exists():
                m.kill()
                m.destroy()
    for parent in sorted(parents, key=len, reverse=True):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(parent)


class CgroupFactory:
    """Managers in a fresh ``cais-cg-test-<random>`` parent, and children in them; all removed
    at the end of the test, even when it fails."""

    def __init__(self, opener: Callable[[str], Manager], v2_root: str | None = None) -> None:
        self.parent = parent_name()
        self.opener = opener
        self.managers: list[Manager] = []
        self.children: list[Child] = []
        self.parents: set[str] = set()
        # Creating a v2 cgroup hands the root's controllers down; on a shared host, undo that.
        self.v2_root = v2_root
        self.root_controllers = _subtree_control(v2_root) if v2_root else set()

    def manager(self, name: str = "ctr", systemd: bool = False) -> Manager:
        """A manager for ``<parent>/<name>``, or, with ``systemd``, for the systemd path ``name``."""
        m = self.opener(inner_path(name, "unused", systemd=True) if systemd else f"{self.parent}/{name}")
        self.managers.append(m)
        self.parents.update(os.path.dirname(p) for p in m.paths.values())
        return m

    def create(self, resources: dict | None = None, name: str = "ctr") -> Manager:
        m = self.manager(name)
        m.create(resources)
        return m

    def child(self, manager: Manager, code: str) -> Child:
        c = Child(manager, code)
        self.children.append(c)
        return c

    def close(self) -> None:
        cleanup(self.managers, self.children, self.parents)
        if self.v2_root:
            for c in _subtree_control(self.v2_root) - self.root_controllers:
                with (
                    contextlib.suppress(OSError),
                    open(os.path.join(self.v2_root, "cgroup.subtree_control"), "w") as f,
                ):
                    f.write(f"-{c}")


def _subtree_control(root: str) -> set[str]:
    with open(os.path.join(root, "cgroup.subtree_control")) as f:
        return set(f.read().split())


V2_CONTROLLERS = ("cpu", "memory", "pids")


def cgroup2_mount(need_controllers: bool) -> str | None:
    """A cgroup2 mount point (with the cpu, memory and pids controllers if asked), or None."""
    for m in cgroup_mounts():
        if m.fstype != "cgroup2":
            continue
        try:
            with open(os.path.join(m.mountpoint, "cgroup.controllers")) as f:
                controllers = f.read().split()
        except OSError:
            continue
        if not need_controllers or all(c in controllers for c in V2_CONTROLLERS):
            return m.mountpoint
    return None


def _factory(version: str) -> CgroupFactory:
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    if version == "v1":
        if mode() == "unified":
            pytest.skip("no cgroup v1 controllers on this host")
        return CgroupFactory(lambda path: V1Manager.for_path(path))
    mountpoint = cgroup2_mount(need_controllers=version == "v2")
    if mountpoint is None:
        what = "with the cpu, memory and pids controllers " if version == "v2" else ""
        pytest.skip(f"no cgroup v2 hierarchy {what}here (scripts/vm-test runs these in a guest)")
    return CgroupFactory(lambda path: V2Manager.for_path(path, mountpoint), v2_root=mountpoint)


def _use(version: str) -> Iterator[CgroupFactory]:
    factory = _factory(version)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(name="cgroups", params=["v1", pytest.param("v2", marks=pytest.mark.cgroup2)])
def cgroups_fixture(request: pytest.FixtureRequest) -> Iterator[CgroupFactory]:
    """The same test on v1 (this host) and on a v2 hierarchy with controllers (the vm-test guest)."""
    yield from _use(request.param)


@pytest.fixture(name="cgroups_v1")
def cgroups_v1_fixture() -> Iterator[CgroupFactory]:
    yield from _use("v1")


@pytest.fixture(name="cgroups_v2")
def cgroups_v2_fixture() -> Iterator[CgroupFactory]:
    """A v2 hierarchy with controllers; mark the test ``cgroup2``."""
    yield from _use("v2")


@pytest.fixture(name="cgroups_unified")
def cgroups_unified_fixture() -> Iterator[CgroupFactory]:
    """Any cgroup2 hierarchy, even one without controllers (the freezer, cgroup.kill and device
    programs are part of cgroup2 itself, so they work on this host's empty v2 tree too)."""
    yield from _use("unified")
