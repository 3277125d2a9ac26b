"""The vfs driver: every layer and every container is a full copy of the tree below it.

Slow and big, but it needs nothing from the file system, so it works where OverlayFS does not
(inside another overlay, on some network file systems). Whiteouts are applied as deletions, and a
container's changes are found by comparing its tree with its image's top layer.

    ROOT/layers/ID/diff       the layer's complete tree;  ROOT/layers/ID/size   bytes it added
    ROOT/containers/CID/diff  the container's rootfs;     ROOT/containers/CID/parent

userns-remap: a container with an id shift gets its copy chowned (the layers keep the image's
owners), and its changes are found comparing owners through the shift.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cais.storage import archive
from cais.storage.driver import Change, Driver, Staging, remove_tree, sweep_staging
from cais.storage.errors import StorageError
from cais.storage.idshift import IdShift, rooted, shift_tree, unshifted


def copy_tree(src: str, dst: str) -> None:
    """Copy a tree keeping owners, modes, times, xattrs, hard links and device nodes (cp -a;
    reflinks where the file system has them)."""
    proc = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", dst], capture_output=True)
    if proc.returncode != 0:
        raise StorageError(f"cannot copy {src}: {proc.stderr.decode(errors='replace').strip()}")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class VfsDriver(Driver):
    name = "vfs"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        for d in (root, self._layers, self._containers):
            os.makedirs(d, mode=0o700 if d == root else 0o755, exist_ok=True)
        sweep_staging(self._layers)
        sweep_staging(self._containers)

    def _make_layer(self, layer_id: str, parent_id: str | None,
                    fill: Callable[[str], archive.DiffResult]) -> archive.DiffResult:
        self._require_new_layer(layer_id)
        if parent_id is not None:
            self._require_layer(parent_id)
        staging = Staging(self._layers)
        try:
            diff = os.path.join(staging.path, "diff")
            os.mkdir(diff, 0o755)
            if parent_id is not None:
                copy_tree(os.path.join(self._layer(parent_id), "diff"), diff)
            result = fill(diff)
            _write(os.path.join(staging.path, "size"), str(result.size))
        except BaseException:
            staging.discard()
            raise
        staging.commit(self._layer(layer_id))
        return result

    def apply_diff(self, layer_id: str, parent_id: str | None, stream: BinaryIO, *,
                   max_size: int | None = None) -> archive.DiffResult:
        return self._make_layer(layer_id, parent_id, lambda diff: archive.unpack(
            stream, diff, "delete", max_size=max_size, guard=self._disk_guard))

    def create_layer(self, layer_id: str, parent_id: str | None) -> None:
        self._make_layer(layer_id, parent_id, lambda diff: archive.DiffResult(archive.EMPTY_DIFF_ID, 0, 1024))

    def remove_layer(self, layer_id: str) -> None:
        self._require_layer(layer_id)
        remove_tree(self._layer(layer_id), self._layers)

    # --- containers --------------------------------------------------------------------------------

    def create_rw(self, container_id: str, parent_layer_id: str | None, id_shift: IdShift | None = None, *,
                  volatile: bool = False) -> None:
        final = self._container(container_id, must_exist=False)
        if os.path.exists(final):
            raise StorageError(f"container {container_id} already has a writable layer")
        if parent_layer_id is not None:
            self._require_layer(parent_layer_id)
        staging = Staging(self._containers)
        try:
            self._record_shift(staging.path, id_shift)
            diff = os.path.join(staging.path, "diff")
            os.mkdir(diff, 0o755)
            if parent_layer_id is not None:
                copy_tree(os.path.join(self._layer(parent_layer_id), "diff"), diff)
            if id_shift is not None:
                shift_tree(diff, id_shift)
            _write(os.path.join(staging.path, "parent"), parent_layer_id or "")
        except BaseException:
            staging.discard()
            raise
        if not staging.commit(final):
            raise StorageError(f"container {container_id} already has a writable layer")

    def mount(self, container_id: str) -> str:
        return os.path.join(self._container(container_id), "diff")

    def unmount(self, container_id: str) -> None:
        self._container(container_id)

    def remove_rw(self, container_id: str) -> None:
        remove_tree(self._container(container_id), self._containers, later=True)  # off the removal's path

    # --- diffs -------------------------------------------------------------------------------------

    def _trees(self, container_id: str) -> tuple[str | None, str]:
        path = self._container(container_id)
        parent = _read(os.path.join(path, "parent"))
        old = os.path.join(self._layer(parent), "diff") if parent else None
        return old, os.path.join(path, "diff")

    def changes(self, container_id: str) -> list[Change]:
        old, new = self._trees(container_id)
        return sorted((Change(kind, "/" + rel) for kind, rel in tree_changes(old, new, self.id_shift(container_id))),
                      key=lambda c: c.path)

    def export_diff(self, container_id: str, out: BinaryIO, *,
                    source_date_epoch: int | None = None) -> archive.DiffResult:
        old, new = self._trees(container_id)
        shift = self.id_shift(container_id)

        def entries() -> Iterator[archive.PackEntry]:
            for kind, rel in tree_changes(old, new, shift):
                if kind == "D":
                    yield archive.PackEntry(rel, None, "whiteout")
                else:
                    yield archive.PackEntry(rel, os.path.join(new, rel))

        return archive.pack(entries(), out, source_date_epoch=source_date_epoch, id_shift=shift)


def _capability(path: str) -> bytes | None:
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


def _differs(a: os.stat_result, b: os.stat_result, old: str, new: str, shift: IdShift | None) -> bool:
    """docker's comparison: mode, owner, device; size and mtime for non-directories; file capabilities
    (`new`'s owners and capabilities seen through `shift`)."""
    owner = (b.st_uid, b.st_gid) if shift is None else unshifted(shift, b.st_uid, b.st_gid)
    if (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) != (b.st_mode, *owner, b.st_rdev):
        return True
    if not stat.S_ISDIR(b.st_mode) and (a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns):
        return True
    caps = _capability(new)
    if caps is not None and shift is not None:
        caps = rooted(caps, 0)
    return _capability(old) != caps


def tree_changes(old: str | None, new: str, shift: IdShift | None = None) -> list[tuple[str, str]]:
    """(kind, relative path) of what differs from tree `old` to tree `new` (a copy chowned by
    `shift`), parents before children; a directory with changes inside is itself reported changed,
    as docker does."""

    def added(rel: str, path: str) -> Iterator[tuple[str, str]]:
        yield "A", rel
        if os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                yield from added(f"{rel}/{name}", os.path.join(path, name))

    def walk(rel: str) -> list[tuple[str, str]]:
        old_dir = os.path.join(old, rel) if old else None
        new_dir = os.path.join(new, rel)
        old_names = set(os.listdir(old_dir)) if old_dir else set()
        out: list[tuple[str, str]] = []
        for name in sorted(old_names | set(os.listdir(new_dir))):
            child = f"{rel}/{name}" if rel else name
            new_path = os.path.join(new_dir, name)
            if name not in old_names:
                out.extend(added(child, new_path))
                continue
            old_path = os.path.join(old_dir, name)  # type: ignore[arg-type]
            try:
                b = os.lstat(new_path)
            except FileNotFoundError:
                out.append(("D", child))
                continue
            a = os.lstat(old_path)
            if stat.S_ISDIR(a.st_mode) and stat.S_ISDIR(b.st_mode):
                inner = walk(child)
                if inner or _differs(a, b, old_path, new_path, shift):
                    out.append(("C", child))
                out.extend(inner)
            elif stat.S_ISDIR(b.st_mode):
                out.append(("C", child))
                for sub in sorted(os.listdir(new_path)):
                    out.extend(added(f"{child}/{sub}", os.path.join(new_path, sub)))
            elif _differs(a, b, old_path, new_path, shift):
                out.append(("C", child))
        return out

    return walk("")
