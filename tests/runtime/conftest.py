"""Fixtures of the runtime tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from cais.runtime.cgroups import Manager, open_manager
from tests.runtime.cgroup_helpers import Child, cleanup, parent_name


class CgroupFactory:
    """Managers in a fresh ``cais-cg-test-<random>`` parent, and children in them; all removed
    at the end of the test, even when it fails."""

    def __init__(self, opener: Callable[[str], Manager]) -> None:
        self.parent = parent_name()
        self.opener = opener
        self.managers: list[Manager] = []
        self.children: list[Child] = []
        self.parents: set[str] = set()

    def manager(self, name: str = "ctr") -> Manager:
        m = self.opener(f"{self.parent}/{name}")
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


@pytest.fixture
def cgroups() -> Iterator[CgroupFactory]:
    """Cgroups on this host's hierarchy, through open_manager (v1 here, v2 in the vm-test guest)."""
    factory = CgroupFactory(lambda path: open_manager(path, "unused"))
    try:
        yield factory
    finally:
        factory.close()
