"""Shared pieces of the cgroups tests: real child processes in throw-away cgroups.

Test modules import the ``cgroups`` fixture: ``from tests.runtime.cgroup_helpers import cgroups_fixture``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from cais.runtime.cgroups import Manager, open_manager
from cais.runtime.cgroups.errors import CgroupError


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


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll until ``condition`` holds; a generous deadline against hangs, not a speed check."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def cleanup(managers: list[Manager], children: list[Child], parents: set[str]) -> None:
    """Kill what the test started, remove its cgroups and their temporary parents."""
    for child in children:
        child.stop()
    for m in managers:
        try:
            if m.exists():
                if m.frozen():
                    m.thaw()
                m.kill()
                m.destroy()
        except CgroupError:
            pass
    for parent in sorted(parents, key=len, reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(parent)


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


@pytest.fixture(name="cgroups")
def cgroups_fixture() -> Iterator[CgroupFactory]:
    """Cgroups on this host's hierarchy, through open_manager (v1 here, v2 in the vm-test guest)."""
    factory = CgroupFactory(lambda path: open_manager(path, "unused"))
    try:
        yield factory
    finally:
        factory.close()
