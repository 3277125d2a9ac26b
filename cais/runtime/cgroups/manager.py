"""The face both backends show, and the run-time choice between them.

The hierarchy is probed, not configured: when ``/sys/fs/cgroup`` itself is a cgroup2 file system
the host is *unified* (v2 only); otherwise v1 controllers are mounted one per directory below it,
with maybe an empty v2 hierarchy at ``/sys/fs/cgroup/unified`` beside them (*hybrid*, as on
systemd hosts of the 2018–2021 era). Hybrid is driven as v1, as runc does.
"""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import os
from abc import ABC, abstractmethod

from cais.runtime.cgroups import fs
from cais.runtime.cgroups.errors import CgroupError
from cais.runtime.cgroups.paths import CGROUP_ROOT, cgroup_mounts, inner_path
from cais.runtime.errors import suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from cais.runtime.cgroups.paths import Mount
    from cais.runtime.cgroups.resources import Resources
    from cais.runtime.cgroups.stats import Stats


def mode(mounts: list[Mount] | None = None) -> str:
    """ "unified" (v2), "hybrid" (v1 controllers plus an empty v2 tree) or "legacy" (v1 only).
    `mounts`: cgroup_mounts() if the caller read them already."""
    mounts = cgroup_mounts() if mounts is None else mounts
    if any(m.fstype == "cgroup2" and m.mountpoint == CGROUP_ROOT for m in mounts):
        return "unified"
    if any(m.fstype == "cgroup2" for m in mounts):
        return "hybrid"
    return "legacy"


class Manager(ABC):
    """A container's cgroup: the same operations on v1 and v2."""

    version: int

    @property
    @abstractmethod
    def paths(self) -> dict[str, str]:
        """Directories of the cgroup: v1 subsystem -> path, v2 "" -> path. Save them to reopen."""

    @abstractmethod
    def create(self, resources: Resources | None = None) -> None:
        """Make the cgroup(s) and write the OCI ``linux.resources``; on failure nothing is left."""

    @abstractmethod
    def update(self, resources: Resources) -> None:
        """Write the given resources to a live cgroup (what ``runc update`` changes)."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup."""

    @abstractmethod
    def freeze(self) -> None:
        """Stop every process of the cgroup; returns when they all are frozen."""

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def frozen(self) -> bool: ...

    @abstractmethod
    def pids(self) -> list[int]:
        """Processes in the cgroup and its descendants."""

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def oom_kills(self) -> int:
        """Processes the kernel OOM-killed in this cgroup so far."""

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def delegate(self, uid: int, gid: int) -> None:
        """Hand the cgroup to a container's root user (with a user namespace)."""

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        """Send ``sig`` to every process; frozen meanwhile so that no fork escapes the signal.

        A paused cgroup stays paused, except for SIGKILL: v1 processes die only once thawed.
        """
        was_frozen = self.frozen()
        froze = False
        with suppress(CgroupError):  # no freezer, or stuck in D state: signal anyway
            if not was_frozen:
                self.freeze()
                froze = True
        try:
            for pid in self.pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        finally:
            if froze or (was_frozen and sig == _signal.SIGKILL):
                self.thaw()

    def destroy(self) -> None:
        """Remove the cgroup(s) and their descendants; their processes must be gone (or going)."""
        for path in sorted(set(self.paths.values())):
            fs.remove(path)


def open_manager(cgroups_path: str | None, container_id: str, systemd: bool = False) -> Manager:
    """The manager of this host's cgroup version for a container's ``linux.cgroupsPath``."""
    inner = inner_path(cgroups_path, container_id, systemd)
    mounts = cgroup_mounts()  # once: mountinfo grows with every container's mounts
    if mode(mounts) == "unified":
        from cais.runtime.cgroups.v2 import V2Manager

        return V2Manager.for_path(inner, mounts=mounts)
    from cais.runtime.cgroups.v1 import V1Manager

    return V1Manager.for_path(inner, mounts)


def load_manager(paths: dict[str, str]) -> Manager:
    """Reopen a manager from its saved ``paths`` (relative paths depend on the caller's cgroup)."""
    if set(paths) == {""}:
        from cais.runtime.cgroups.v2 import V2Manager

        return V2Manager(paths[""])
    from cais.runtime.cgroups.v1 import V1Manager

    return V1Manager(dict(paths))
