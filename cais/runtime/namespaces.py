"""linux.namespaces: which to create (clone flags), which to join (setns by path), id mappings."""

from __future__ import annotations

import errno
import os

from cais.linux import namespaces as ns
from cais.runtime.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# setns order: the user namespace first (it grants the capabilities over the others), mount last.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def plan(config: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    """(clone flags of the namespaces to create, [(type, path)] of those to join)."""
    flags = 0
    joins = []
    for entry in config.get("linux", {}).get("namespaces", []):
        kind = entry["type"]
        if entry.get("path"):
            joins.append((kind, entry["path"]))
        elif kind == "time":
            raise ConfigError("creating a time namespace is not supported")
        else:
            flags |= ns.NAMESPACES[kind][0]
    if not flags & ns.CLONE_NEWNS and not any(k == "mount" for k, _ in joins):
        raise ConfigError("a mount namespace is required")
    return flags, joins


def of_process(config: dict[str, Any], pid: int) -> list[tuple[str, str]]:
    """The namespaces of a running container's init, as paths to join (for exec)."""
    kinds = [e["type"] for e in config.get("linux", {}).get("namespaces", [])]
    return [(k, f"/proc/{pid}/ns/{ns.NAMESPACES[k][1]}") for k in kinds]


def join(joins: list[tuple[str, str]]) -> None:
    """setns into each path: every path is opened before the first setns changes what paths mean."""
    opened = []
    try:
        for kind, path in joins:
            try:
                opened.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise ConfigError(f"namespace {kind} {path}: {e.strerror}") from None
        opened.sort(key=lambda item: _JOIN_ORDER.index(item[0]))
        # As runc: the others first while the caller's own capabilities still count (a namespace
        # the engine made, e.g. a netns, is owned by the initial user namespace and out of reach
        # from inside the container's), then the user namespace, then those that needed it.
        later = []
        for kind, fd in opened:
            if kind == "user":
                continue
            try:
                ns.setns(fd, ns.NAMESPACES[kind][0])
            except OSError as e:
                if e.errno != errno.EPERM or not any(k == "user" for k, _ in opened):
                    raise ConfigError(f"cannot join {kind} namespace: {e.strerror}") from None
                later.append((kind, fd))
        for kind, fd in [*[o for o in opened if o[0] == "user"], *later]:
            try:
                ns.setns(fd, ns.NAMESPACES[kind][0])
            except OSError as e:
                raise ConfigError(f"cannot join {kind} namespace: {e.strerror}") from None
    finally:
        for _, fd in opened:
            os.close(fd)


def write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    """uid_map/gid_map of a child in a new user namespace (written by the parent, once)."""
    for key, name in (("gidMappings", "gid_map"), ("uidMappings", "uid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key, []))
        if not lines:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as e:
            raise ConfigError(f"{key}: cannot write {name}: {e.strerror}") from None


def unshare_cgroup() -> None:
    """A cgroup namespace rooted at the caller's current cgroups (call it once inside them)."""
    ns.unshare(ns.CLONE_NEWCGROUP)
