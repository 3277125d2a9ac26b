"""The storage driver interface, and `open_driver`, which picks overlay or vfs for a data root.

A layer is a directory identified by an opaque id the caller chooses (the image store uses chain
ids). A container gets a writable layer on top of an image's top layer; `mount` gives its rootfs.
Layers and writable layers appear atomically: they are built under a temporary name and renamed
into place when complete, so a crash leaves no half-made layer that looks trusted.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO

from cais.linux.inodeflags import mark_top_dir
from cais.storage.archive import DiffResult
from cais.storage.errors import LayerExists, LayerNotFound, LayerTooLarge, StorageError
from cais.storage.idshift import IdShift
from cais.storage.reclaim import delete_later

__all__ = ["Change", "DiffResult", "Driver", "open_driver", "DRIVERS"]

DRIVERS = ("overlay", "vfs")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
STAGING_PREFIX = ".tmp-"
_NEW_PREFIX = ".new-"
_NEW_MAX_AGE = 60  # seconds a ".new-" directory may stay unlocked before a sweep removes it
_IDMAP = "idmap"  # in a container's directory: "UID UID_SIZE GID GID_SIZE", its id shift


@dataclass(frozen=True)
class Change:
    kind: str  # "A" added, "C" changed, "D" deleted — as `docker diff` prints
    path: str  # absolute, e.g. "/etc/passwd"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def check_id(what: str, ident: str) -> str:
    if not isinstance(ident, str) or not _ID.match(ident):
        raise StorageError(f"invalid {what} id {ident!r}")
    return ident


class Staging:
    """A fresh temporary directory under `parent`, flock'ed while in use so that a sweep at start-up
    can tell an abandoned one (its process died) from one another process is still filling."""

    def __init__(self, parent: str) -> None:
        # Made under a ".new-" name and locked before it takes its ".tmp-" name, so that a sweep
        # never sees an unlocked staging directory that is in fact about to be used.
        fresh = tempfile.mkdtemp(prefix=_NEW_PREFIX, dir=parent)
        self._fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.path = os.path.join(parent, STAGING_PREFIX + os.path.basename(fresh)[len(_NEW_PREFIX):])
        os.rename(fresh, self.path)

    def commit(self, final: str) -> bool:
        """Rename into place; False if `final` already exists (another process won the race)."""
        try:
            os.rename(self.path, final)
        except OSError as e:
            if os.path.isdir(final):
                self.discard()
                return False
            raise StorageError(f"cannot move layer into place: {e.strerror}") from None
        self.path = final
        self._unlock()
        return True

    def _unlock(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._unlock()


def sweep_staging(parent: str) -> None:
    """Remove abandoned staging directories (left by a crash) under `parent`."""
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(parent, name)
        if name.startswith(_NEW_PREFIX):
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(path).st_mtime > _NEW_MAX_AGE:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        if not name.startswith(STAGING_PREFIX):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # still in use
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def reachable(path: str, gid: int) -> None:
    """userns-remap: let the remapped root (by group `gid`) traverse a container's own `path` on
    the way to its rootfs."""
    os.chown(path, 0, gid)
    os.chmod(path, 0o710)


def remove_tree(path: str, parent: str, *, later: bool = False) -> None:
    """Remove a committed directory: first rename it to a staging name (so it stops looking
    trusted at once), then delete it — `later`: in the background (reclaim.py)."""
    while True:  # renamed as it is, not into a directory made for it: one inode less to create
        staging = os.path.join(parent, f"{STAGING_PREFIX}rm-{secrets.token_hex(6)}")
        try:
            os.rename(path, staging)
            break
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):  # else: that name is taken, another one
                raise
    if later:
        delete_later(staging)
    else:
        shutil.rmtree(staging, ignore_errors=True)


class Driver(abc.ABC):
    """Layers and containers' writable layers under one root directory."""

    name: str
    # An unpack with no size limit of its own stops before it leaves less than this free on disk.
    disk_reserve = 512 << 20

    def __init__(self, root: str) -> None:
        self.root = root
        self._layers = os.path.join(root, "layers")
        self._containers = os.path.join(root, "containers")

    # userns-remap: the layers are shared by every container, with the image's owners on disk; a
    # container created with an id shift sees them through it (idmapped mounts), and its own
    # writable layer holds host ids (docker's layout: what a remapped root creates is its own).

    def id_shift(self, container_id: str) -> IdShift | None:
        """The id shift container `container_id` was created with, if any."""
        try:
            with open(os.path.join(self._container(container_id), _IDMAP)) as f:
                return IdShift(*(int(n) for n in f.read().split()))
        except FileNotFoundError:
            return None

    def _record_shift(self, container_dir: str, shift: IdShift | None) -> None:
        if shift is not None:
            reachable(container_dir, shift.gid)
            with open(os.path.join(container_dir, _IDMAP), "w") as f:
                f.write(" ".join(map(str, shift)))

    def private_dirs(self) -> list[str]:
        """Directories no one but root may enter: the layers, whose files have the images' owners
        (a committed set-uid root binary among them)."""
        return [self._layers]

    @abc.abstractmethod
    def apply_diff(self, layer_id: str, parent_id: str | None, stream: BinaryIO, *,
                   max_size: int | None = None) -> DiffResult:
        """Make layer `layer_id` from `stream` (a tar, gzip or zstd layer) on top of `parent_id`."""

    @abc.abstractmethod
    def create_layer(self, layer_id: str, parent_id: str | None) -> None:
        """Make an empty layer (an empty diff)."""

    def has_layer(self, layer_id: str) -> bool:
        return os.path.isdir(os.path.join(self._layer(check_id("layer", layer_id)), "diff"))

    @abc.abstractmethod
    def remove_layer(self, layer_id: str) -> None: ...

    def layer_size(self, layer_id: str) -> int:
        """Bytes of file content the layer's diff holds."""
        self._require_layer(layer_id)
        with open(os.path.join(self._layer(layer_id), "size")) as f:
            return int(f.read().strip())

    @abc.abstractmethod
    def create_rw(self, container_id: str, parent_layer_id: str | None, id_shift: IdShift | None = None, *,
                  volatile: bool = False) -> None:
        """A container's writable layer over `parent_layer_id`. `volatile`: a layer that goes with
        its container's exit (--rm), which a driver may then never flush to disk (overlay). With
        `id_shift` (userns-remap) its rootfs shows the image's owner N as host id base+N, and what
        the container writes keeps its host ids."""

    def volatile_rw_layers(self) -> list[str]:
        """The containers whose writable layer was made `volatile` (drivers that keep the mark)."""
        return []

    @abc.abstractmethod
    def mount(self, container_id: str) -> str:
        """The path of the container's root filesystem, ready to use; mounting twice is harmless.
        Mounts are not counted here: the engine counts its users (cais/engine/rootfs.py)."""

    @abc.abstractmethod
    def unmount(self, container_id: str) -> None:
        """Take the container's root filesystem down (a no-op if it is not mounted)."""

    @abc.abstractmethod
    def remove_rw(self, container_id: str) -> None: ...

    @abc.abstractmethod
    def changes(self, container_id: str) -> list[Change]:
        """What the container changed, as `docker diff` shows it, sorted by path."""

    @abc.abstractmethod
    def export_diff(self, container_id: str, out: BinaryIO, *,
                    source_date_epoch: int | None = None) -> DiffResult:
        """Write the container's changes as an OCI layer tar (with .wh. whiteouts), reproducibly."""

    # helpers shared by both drivers

    def _layer(self, layer_id: str) -> str:
        return os.path.join(self._layers, layer_id)

    def _container(self, container_id: str, must_exist: bool = True) -> str:
        path = os.path.join(self._containers, check_id("container", container_id))
        if must_exist and not os.path.isdir(path):
            raise LayerNotFound(f"no writable layer for container {container_id}")
        return path

    def _disk_guard(self) -> None:
        """Stop an unpack that is about to fill the disk — with bytes, or with inodes (a layer of
        millions of empty files compresses to almost nothing)."""
        st = os.statvfs(self.root)
        if st.f_bavail * st.f_frsize < self.disk_reserve:
            raise LayerTooLarge(f"stopping the unpack: less than {self.disk_reserve >> 20} MiB left free "
                                f"under {self.root}")
        if st.f_files and st.f_favail < max(st.f_files // 100, 1000):
            raise LayerTooLarge(f"stopping the unpack: the file system under {self.root} is running out of inodes")

    def _require_new_layer(self, layer_id: str) -> None:
        check_id("layer", layer_id)
        if self.has_layer(layer_id):
            raise LayerExists(f"layer {layer_id} already exists")

    def _require_layer(self, layer_id: str) -> None:
        check_id("layer", layer_id)
        if not self.has_layer(layer_id):
            raise LayerNotFound(f"layer {layer_id} not found")


def open_driver(root: str, name: str | None = None, remapped: bool = False) -> Driver:
    """The storage driver for data root `root` (its files go under ROOT/NAME).

    With no `name`: the driver already in use under `root` if exactly one is, else overlay when
    OverlayFS works on root's file system, else vfs. `remapped` (userns-remap): the remapped roots
    of any mapping may walk through to their containers' own directories (0711: no listing), never
    into the layers (0700).
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    if name is None:
        used = [d for d in DRIVERS if os.path.isdir(os.path.join(root, d))]
        if len(used) == 1:
            name = used[0]
        else:
            from cais.storage.overlay import overlay_supported
            name = "overlay" if overlay_supported(root) else "vfs"
    if name == "overlay":
        from cais.storage.overlay import OverlayDriver
        driver: Driver = OverlayDriver(os.path.join(root, "overlay"))
    elif name == "vfs":
        from cais.storage.vfs import VfsDriver
        driver = VfsDriver(os.path.join(root, "vfs"))
    else:
        raise StorageError(f"unknown storage driver {name!r} (known: {', '.join(DRIVERS)})")
    # each container's directory in a block group of its own, away from other writers' recent
    # deletions (ext4 without a journal makes every new inode scan past them): about half the time
    # of a container's create and mount on a busy disk
    mark_top_dir(driver._containers)
    if remapped:
        for path in (root, driver.root, driver._containers):
            os.chmod(path, 0o711)
        for path in driver.private_dirs():
            os.chmod(path, 0o700)
    return driver
