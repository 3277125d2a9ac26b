"""A root file system with directories bound into it, seen only through an fd.

`docker cp` on a stopped container sees its volumes and bind mounts, because docker mounts them on
the container's root file system for the copy. Here they are bound in a mount namespace of a
short-lived thread (every mount in it made private first), so nothing appears in the daemon's mount
table and nothing is left to unmount after a crash: the namespace, pinned by an fd of it while the
copy runs, takes its mounts with it when that fd and the root's are closed. Lookups from the root's
fd cross into the binds from any thread, as lookups through /proc/PID/root do. A remapped
container's volumes are bound idmapped, as it mounts them (userns-remap).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cais.linux import fsmount
from cais.linux.mount import MS_PRIVATE, MS_REC, mount
from cais.linux.namespaces import CLONE_NEWNS, unshare
from cais.storage.rootdir import RootDir, components


@dataclass(frozen=True)
class Bind:
    """`source` (a host path, followed as a bind source is) on `destination` in the root; with
    `subpath`, that directory of the source instead, opened by open_view's open_subpath; with
    `userns_fd`, idmapped through that user namespace's mapping."""

    destination: str
    source: str
    readonly: bool = False
    subpath: str = ""
    userns_fd: int | None = None


class MountView:
    """The root (`.root`, a RootDir) with its binds; close() drops both."""

    def __init__(self, root: RootDir, ns_fd: int) -> None:
        self.root = root
        self.ns_fd = ns_fd

    def close(self) -> None:
        self.root.close()
        if self.ns_fd >= 0:
            os.close(self.ns_fd)
            self.ns_fd = -1


def open_view(rootfs: str, binds: list[Bind], open_subpath: Callable[[str, str], int] | None = None) -> MountView:
    """`rootfs` with `binds` mounted in order (parents first), in a private mount namespace."""
    out: dict[str, object] = {}

    def run() -> None:
        root = None
        try:
            unshare(CLONE_NEWNS)  # this thread only (it implies CLONE_FS); it exits right after
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            root = RootDir.at(rootfs)
            for bind in binds:
                _bind(root, bind, open_subpath)
            out["view"] = MountView(root, os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))
        except BaseException as e:  # handed to the caller's thread
            if root is not None:
                root.close()
            out["error"] = e

    thread = threading.Thread(target=run, name="cais-mountview")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["view"]  # type: ignore[return-value]


def _bind(root: RootDir, bind: Bind, open_subpath: Callable[[str, str], int] | None) -> None:
    """A detached clone of the source (open_tree), idmapped and read-only if asked, attached on the
    fd of the destination the kernel resolved inside the root (move_mount): no path is walked twice."""
    source_fd = open_subpath(bind.source, bind.subpath) if bind.subpath and open_subpath else \
        os.open(bind.source, os.O_PATH | os.O_CLOEXEC)
    try:
        tree = fsmount.open_tree("", fsmount.OPEN_TREE_CLONE | fsmount.OPEN_TREE_CLOEXEC | fsmount.AT_RECURSIVE
                                 | fsmount.AT_EMPTY_PATH, dir_fd=source_fd)
        is_dir = stat.S_ISDIR(os.fstat(source_fd).st_mode)
    finally:
        os.close(source_fd)
    try:
        if bind.userns_fd is not None:
            fsmount.set_idmap(tree, bind.userns_fd, recursive=True)
        if bind.readonly:
            fsmount.set_readonly(tree)
        target = _mount_point(root, bind.destination, is_dir)
        try:
            fsmount.move_mount_onto(tree, target)
        finally:
            os.close(target)
    finally:
        os.close(tree)


def _mount_point(root: RootDir, destination: str, is_dir: bool) -> int:
    """An O_PATH fd of the destination inside the root, made when missing (as docker does)."""
    try:
        return root.open(destination)
    except FileNotFoundError:
        pass
    if is_dir:
        return root.makedirs(destination)
    parts = components(destination)
    parent = root.makedirs("/".join(parts[:-1]))
    try:
        os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent))
    finally:
        os.close(parent)
    return root.open(destination)
