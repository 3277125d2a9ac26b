"""The overlay driver: OverlayFS, laid out like docker's overlay2.

    ROOT/layers/ID/diff    the layer's files (OverlayFS whiteouts and opaque xattrs included)
    ROOT/layers/ID/link    its short name; ROOT/l/SHORT -> ../layers/ID/diff
    ROOT/layers/ID/lower   its ancestors' short names, nearest first: "l/AAA:l/BBB"
    ROOT/layers/ID/size    bytes of file content in diff
    ROOT/containers/CID/{diff,work,merged,lower}   a container's upper, work and mount point

The mount is made from a thread that has its own cwd (unshare(CLONE_FS)) inside ROOT, with
relative lowerdirs "l/SHORT": 29 bytes a layer, so 120+ layers fit in the one page of mount
options mount(2) accepts, whatever ROOT's length. Deeper stacks go through the new mount API,
one layer per fsconfig(2) call.

userns-remap: a container with an id shift sees each lower layer through an idmapped mount of
its diff, so the one copy of the layers serves every mapping. From Linux 6.13 they are handed to
OverlayFS by fd as detached mounts; before (5.19+), they are attached for the time of the mount
under the container's own 0700 `lowers/` and named by path, then detached (OverlayFS holds its
own private clones of its layers). The upper dir is not idmapped: it holds what the container
wrote with host ids (as docker's does).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import os
import secrets
import shutil
import stat
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cais.linux import fs, fsmount
from cais.linux import mount as mnt
from cais.linux.mountinfo import is_mount_point
from cais.storage import archive, reclaim, whiteouts
from cais.storage.driver import Change, Driver, Staging, remove_tree, sweep_staging
from cais.storage.errors import StorageError
from cais.storage.idshift import IdShift, user_namespace

MOUNT_SOURCE = "cais-st-overlay"
_PAGE = os.sysconf("SC_PAGESIZE")
# Options pinned off so that a diff stays a plain directory tree: no inode index tying an upper dir
# to its lowers, no redirects or metacopy-only files that an export could not archive.
_PINNED = ("index", "redirect_dir", "metacopy")
VOLATILE = "volatile"  # in a container's layer directory: mount it with `volatile`


def _short_name() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")  # 26 characters


@functools.cache
def _pinned() -> tuple[str, ...]:
    """The options of _PINNED this kernel's OverlayFS knows (looked up once per process)."""
    return tuple(opt for opt in _PINNED if os.path.exists(f"/sys/module/overlay/parameters/{opt}"))


def _pinned_options() -> str:
    return "".join(f",{opt}=off" for opt in _pinned())


def _is_mounted(path: str) -> bool:
    """Whether something is mounted on `path`, a directory of ours (not a symlink) — what
    os.path.ismount tells, without resolving every component of the parent's path."""
    try:
        st, parent = os.lstat(path), os.lstat(os.path.dirname(path))
    except FileNotFoundError:
        return False
    return st.st_dev != parent.st_dev or st.st_ino == parent.st_ino


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _absolute(root: str, data: str) -> str | None:
    """Overlay options with paths relative to `root` made absolute (None if `root` has a character
    that the options would need escaped)."""
    if not root.startswith("/") or any(c in root for c in ",:\\="):
        return None
    out = []
    for option in data.split(","):
        key, sep, value = option.partition("=")
        if key == "lowerdir":
            value = ":".join(f"{root}/{p}" for p in value.split(":"))
        elif key in ("upperdir", "workdir"):
            value = f"{root}/{value}"
        out.append(key + sep + value)
    return ",".join(out)


def _mount(target: str, data: str) -> None:
    try:
        mnt.mount(MOUNT_SOURCE, target, "overlay", 0, data)
    except OSError as e:
        raise StorageError(f"cannot mount overlay at {target}: {e.strerror}") from None


def mount_in(cwd: str, target: str, data: str) -> None:
    """Mount an overlay whose option paths are relative to `cwd`, without moving the process's cwd."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fs.unshare_fs()
            os.chdir(cwd)
            mnt.mount(MOUNT_SOURCE, target, "overlay", 0, data)
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread
            failure.append(e)

    thread = threading.Thread(target=run, name="cais-st-mount")
    thread.start()
    thread.join()
    if failure:
        e = failure[0]
        if isinstance(e, OSError):
            raise StorageError(f"cannot mount overlay at {target}: {e.strerror}") from None
        raise e


def _discard_all(stagings: list[Staging]) -> None:
    while stagings:
        stagings.pop().discard()


class _NoLayersByFd(StorageError):
    """The kernel takes no overlay layer by fd (before Linux 6.13)."""


def mount_deep(target: str, lowers: list[str], upper: str, work: str, volatile: bool = False,
               userns_fd: int | None = None) -> None:
    """Mount an overlay with the new mount API: one `lowerdir+` per layer (Linux 6.8+), so deeper
    than one page of options allows, up to OverlayFS's own limit of 500 layers; with `userns_fd`,
    each lower is an idmapped mount through that user namespace's mapping."""
    fs_fd = -1
    step = "mount"
    layer_fds: list[int] = []  # open until the overlay is made: it clones them then
    try:
        fs_fd = fsmount.fsopen("overlay")
        fsmount.fsconfig_string(fs_fd, "source", MOUNT_SOURCE)
        for lower in lowers:
            if userns_fd is None:
                fsmount.fsconfig_string(fs_fd, "lowerdir+", lower)
                continue
            step = "idmap"
            layer_fds.append(fsmount.idmapped_tree(lower, userns_fd))
            try:
                fsmount.fsconfig_fd(fs_fd, "lowerdir+", layer_fds[-1])
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise _NoLayersByFd(fsmount.kernel_messages(fs_fd)) from None
                raise
            step = "mount"
        fsmount.fsconfig_string(fs_fd, "upperdir", upper)
        fsmount.fsconfig_string(fs_fd, "workdir", work)
        for opt in _pinned():
            fsmount.fsconfig_string(fs_fd, opt, "off")
        if volatile:
            fsmount.fsconfig_flag(fs_fd, "volatile")
        fsmount.fsconfig_create(fs_fd)
        mount_fd = fsmount.fsmount(fs_fd)
        try:
            fsmount.move_mount_to(mount_fd, target)
        finally:
            os.close(mount_fd)
    except OSError as e:
        why = fsmount.kernel_messages(fs_fd) if fs_fd >= 0 else ""
        need = " (userns-remap: the layers' file system must support idmapped mounts)" if step == "idmap" else ""
        raise StorageError(f"cannot mount an overlay of {len(lowers)} layers at {target}: {e.strerror}"
                           + (f" ({why})" if why else "") + need) from None
    finally:
        for fd in layer_fds:
            os.close(fd)
        if fs_fd >= 0:
            os.close(fs_fd)


def _detach_lowers(top: str) -> None:
    """Detach and remove the attach points of idmapped layers under `top` (rmdir only: never a
    walk into a layer still attached)."""
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return
    for name in names:
        point = os.path.join(top, name)
        with contextlib.suppress(OSError):
            while is_mount_point(point):  # a bind of the same file system: os.path.ismount cannot tell
                mnt.umount(point, mnt.MNT_DETACH)
            os.rmdir(point)
    try:
        os.rmdir(top)
    except OSError as e:  # one is still attached: stop rather than walk into it
        raise StorageError(f"cannot detach the idmapped layers under {top}: {e.strerror}") from None


def overlay_supported(root: str) -> bool:
    """Whether an overlay (with a whiteout) can be mounted on root's file system."""
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read().split():
                return False
        probe = tempfile.mkdtemp(prefix=".tmp-probe-", dir=root)
    except OSError:
        return False
    try:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(probe, d))
        upper = os.open(os.path.join(probe, "upper"), os.O_PATH | os.O_CLOEXEC)
        try:
            whiteouts.make_overlay_whiteout(upper, "x")
        finally:
            os.close(upper)
        mount_in(probe, os.path.join(probe, "merged"), "lowerdir=lower,upperdir=upper,workdir=work")
        mnt.umount(os.path.join(probe, "merged"), mnt.MNT_DETACH)
        return True
    except (OSError, StorageError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


class OverlayDriver(Driver):
    name = "overlay"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._links = os.path.join(root, "l")
        for d in (root, self._layers, self._links, self._containers, os.path.join(root, "empty")):
            os.makedirs(d, mode=0o700 if d == root else 0o755, exist_ok=True)
        sweep_staging(self._layers)
        sweep_staging(self._containers)
        self._repair_links()
        self._mount_lock = threading.Lock()
        self._layers_by_fd = True  # until the kernel says otherwise
        # a container's directory made ahead (see _refill_spare); discarded with the driver
        self._spare: list[Staging] = []
        self._spare_lock = threading.Lock()
        self._made = 0  # writable layers this process made
        weakref.finalize(self, _discard_all, self._spare)

    def private_dirs(self) -> list[str]:
        return [*super().private_dirs(), self._links, os.path.join(self.root, "empty")]

    def _repair_links(self) -> None:
        """Make the l/ links agree with the committed layers (after a crash between the steps)."""
        wanted = {}
        for layer_id in os.listdir(self._layers):
            if not layer_id.startswith("."):
                try:
                    wanted[_read(os.path.join(self._layers, layer_id, "link"))] = layer_id
                except FileNotFoundError:
                    continue
        for link in os.listdir(self._links):
            path = os.path.join(self._links, link)
            if link not in wanted and not os.path.exists(path):  # dangling: its layer is gone
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        for link, layer_id in wanted.items():
            with contextlib.suppress(FileExistsError):  # another process may be repairing too
                os.symlink(f"../layers/{layer_id}/diff", os.path.join(self._links, link))

    # --- layers ------------------------------------------------------------------------------------

    def _lower_for_child(self, parent_id: str | None) -> str:
        if parent_id is None:
            return ""
        self._require_layer(parent_id)
        parent = self._layer(parent_id)
        lower = _read(os.path.join(parent, "lower"))
        own = "l/" + _read(os.path.join(parent, "link"))
        return f"{own}:{lower}" if lower else own

    def _make_layer(self, layer_id: str, parent_id: str | None,
                    fill: Callable[[str, list[str]], archive.DiffResult]) -> archive.DiffResult:
        self._require_new_layer(layer_id)
        lower = self._lower_for_child(parent_id)
        staging = Staging(self._layers)
        try:
            diff = os.path.join(staging.path, "diff")
            os.mkdir(diff, 0o755)
            result = fill(diff, self._layer_dirs(lower))
            link = _short_name()
            _write(os.path.join(staging.path, "link"), link)
            _write(os.path.join(staging.path, "lower"), lower)
            _write(os.path.join(staging.path, "size"), str(result.size))
        except BaseException:
            staging.discard()
            raise
        if staging.commit(self._layer(layer_id)):
            with contextlib.suppress(FileExistsError):  # made by a concurrent repair
                os.symlink(f"../layers/{layer_id}/diff", os.path.join(self._links, link))
        return result

    def apply_diff(self, layer_id: str, parent_id: str | None, stream: BinaryIO, *,
                   max_size: int | None = None) -> archive.DiffResult:
        return self._make_layer(layer_id, parent_id, lambda diff, lowers: archive.unpack(
            stream, diff, "overlay", lowers=lowers, max_size=max_size, guard=self._disk_guard))

    def create_layer(self, layer_id: str, parent_id: str | None) -> None:
        self._make_layer(layer_id, parent_id, lambda diff, lowers: archive.DiffResult(archive.EMPTY_DIFF_ID, 0, 1024))

    def _user_of(self, link: str) -> str | None:
        """A layer or container stacked on the layer whose short name is `link`, if any."""
        wanted = f"l/{link}"
        for kind, parent in (("layer", self._layers), ("container", self._containers)):
            for name in os.listdir(parent):
                if name.startswith("."):
                    continue
                try:
                    if wanted in _read(os.path.join(parent, name, "lower")).split(":"):
                        return f"{kind} {name}"
                except FileNotFoundError:
                    continue
        return None

    def remove_layer(self, layer_id: str) -> None:
        """Remove a layer; refused while another layer or a container is stacked on it (with
        overlay they read its files at mount time)."""
        self._require_layer(layer_id)
        path = self._layer(layer_id)
        link = _read(os.path.join(path, "link"))
        user = self._user_of(link)
        if user is not None:
            raise StorageError(f"layer {layer_id} is in use by {user}")
        remove_tree(path, self._layers)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._links, link))

    # --- containers --------------------------------------------------------------------------------

    def create_rw(self, container_id: str, parent_layer_id: str | None, id_shift: IdShift | None = None, *,
                  volatile: bool = False) -> None:
        """`volatile`: mounted with OverlayFS's `volatile` (no sync of the upper file system at each
        unmount — with other writers on the disk, the slowest step of a container's exit); as podman
        does for --rm, for a layer that is removed with its container, so a crash cannot hurt it."""
        final = self._container(container_id, must_exist=False)
        if os.path.exists(final):
            raise StorageError(f"container {container_id} already has a writable layer")
        lower = self._lower_for_child(parent_layer_id)
        with self._spare_lock:
            staging = self._spare.pop() if self._spare else None
            self._made += 1
        if staging is None:
            staging = self._skeleton()
        try:
            self._record_shift(staging.path, id_shift)
            if id_shift is not None:  # the root directory, as the remapped root's
                os.chown(os.path.join(staging.path, "diff"), id_shift.uid, id_shift.gid)
            _write(os.path.join(staging.path, "lower"), lower)
            if volatile:
                _write(os.path.join(staging.path, VOLATILE), "")
        except BaseException:
            staging.discard()
            raise
        if not staging.commit(final):
            raise StorageError(f"container {container_id} already has a writable layer")

    def _skeleton(self) -> Staging:
        """A staging directory holding a writable layer's empty diff, work and merged."""
        staging = Staging(self._containers)
        try:
            for d, mode in (("diff", 0o755), ("work", 0o700), ("merged", 0o755)):
                os.mkdir(os.path.join(staging.path, d), mode)
        except BaseException:
            staging.discard()
            raise
        return staging

    def _refill_spare(self) -> None:
        """Make the next container's directory ahead, in the background (reclaim.py), after a
        removal: its four new inodes — the slowest part of a create on a busy disk — are then off
        the next create's path. Only in a process that makes more than one container (a daemon, not
        the CLI's one-off engine); one spare at a time, under a locked staging name, so a crash
        leaves it to the next sweep."""
        with self._spare_lock:
            if self._spare:
                return
        staging = self._skeleton()
        with self._spare_lock:
            self._spare.append(staging)
            if len(self._spare) == 1:
                return
            extra = self._spare.pop()  # another refill won the race
        extra.discard()

    def volatile_rw_layers(self) -> list[str]:
        return [name for name in os.listdir(self._containers)
                if not name.startswith(".") and os.path.exists(os.path.join(self._containers, name, VOLATILE))]

    def mount(self, container_id: str) -> str:
        """Mount the container's rootfs (a no-op if it is mounted already)."""
        path = self._container(container_id)
        merged = os.path.join(path, "merged")
        shift = self.id_shift(container_id)
        with self._mount_lock:
            if not _is_mounted(merged):
                lower = _read(os.path.join(path, "lower")) or "empty"
                rel = f"containers/{container_id}"
                volatile = os.path.exists(os.path.join(path, VOLATILE))
                if volatile:  # mounted before: OverlayFS wants its marker gone (the layer is disposable)
                    shutil.rmtree(os.path.join(path, "work", "work", "incompat"), ignore_errors=True)
                data = (f"lowerdir={lower},upperdir={rel}/diff,workdir={rel}/work{_pinned_options()}"
                        + (",volatile" if volatile else ""))
                if shift is not None:
                    self._mount_idmapped(container_id, self._layer_dirs(lower), user_namespace(shift), volatile)
                elif (absolute := _absolute(self.root, data)) is not None and len(absolute) < _PAGE:
                    _mount(merged, absolute)  # as is: no helper thread to mount from the root
                elif len(data) < _PAGE:
                    mount_in(self.root, merged, data)
                else:
                    mount_deep(merged, self._layer_dirs(lower), os.path.join(path, "diff"), os.path.join(path, "work"),
                               volatile)
        return merged

    def _mount_idmapped(self, container_id: str, lowers: list[str], userns_fd: int, volatile: bool) -> None:
        path = self._container(container_id)
        if self._layers_by_fd:
            try:
                mount_deep(os.path.join(path, "merged"), lowers, os.path.join(path, "diff"), os.path.join(path, "work"),
                           volatile, userns_fd)
                return
            except _NoLayersByFd:
                self._layers_by_fd = False
        self._mount_attached(container_id, lowers, userns_fd, volatile)

    def _mount_attached(self, container_id: str, lowers: list[str], userns_fd: int, volatile: bool) -> None:
        """Linux 5.19-6.12: the idmapped layers attached under the container's `lowers/` for the
        time of the mount, named by relative paths in one page of options."""
        rel = f"containers/{container_id}"
        top = os.path.join(self.root, rel, "lowers")
        _detach_lowers(top)  # left by a crash in between
        os.makedirs(top, 0o700, exist_ok=True)
        attached = []
        try:
            for i, lower in enumerate(lowers):
                point = os.path.join(top, str(i))
                os.makedirs(point, 0o700, exist_ok=True)
                try:
                    fd = fsmount.idmapped_tree(lower, userns_fd)
                except OSError as e:
                    raise StorageError(f"cannot idmap layer {lower}: {e.strerror} (userns-remap: the layers' file "
                                       "system must support idmapped mounts)") from None
                try:
                    fsmount.move_mount_to(fd, point)
                finally:
                    os.close(fd)
                attached.append(point)
            data = (f"lowerdir={':'.join(f'{rel}/lowers/{i}' for i in range(len(lowers)))},"
                    f"upperdir={rel}/diff,workdir={rel}/work{_pinned_options()}" + (",volatile" if volatile else ""))
            if len(data) >= _PAGE:
                raise StorageError(f"cannot mount an idmapped overlay of {len(lowers)} layers: more than one page "
                                   "of options (userns-remap: Linux 6.13+ takes them by fd, without this limit)")
            mount_in(self.root, os.path.join(self.root, rel, "merged"), data)
        finally:
            _detach_lowers(top)

    def unmount(self, container_id: str) -> None:
        """Take the rootfs down (lazily: MNT_DETACH); a no-op if it is not mounted."""
        merged = os.path.join(self._container(container_id), "merged")
        with self._mount_lock:
            if _is_mounted(merged):
                try:
                    mnt.umount(merged, mnt.MNT_DETACH)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise StorageError(f"cannot unmount {merged}: {e.strerror}") from None

    def remove_rw(self, container_id: str) -> None:
        path = self._container(container_id)
        self.unmount(container_id)
        _detach_lowers(os.path.join(path, "lowers"))  # a removal must never walk into a shared layer
        remove_tree(path, self._containers, later=True)  # a container's layer: off its removal's path
        if self._made >= 2:  # now rather than after a create: the next start is not under way yet
            reclaim.run_later(self._refill_spare)

    # --- diffs -------------------------------------------------------------------------------------

    def _layer_dirs(self, lower: str) -> list[str]:
        """The diff directories named by a `lower` chain ("l/AAA:l/BBB"), top first."""
        return [os.path.realpath(os.path.join(self.root, link)) for link in lower.split(":") if link]

    def _lowers(self, container_id: str) -> list[str]:
        return self._layer_dirs(_read(os.path.join(self._container(container_id), "lower")))

    def _walk_upper(self, container_id: str) -> Iterator[tuple[str, str, os.stat_result]]:
        """(relative path, absolute path, lstat) of everything in the upper dir, parents first,
        names sorted."""
        upper = os.path.join(self._container(container_id), "diff")

        def walk(rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
            base = os.path.join(upper, rel) if rel else upper
            for name in sorted(os.listdir(base)):
                child = f"{rel}/{name}" if rel else name
                path = os.path.join(base, name)
                st = os.lstat(path)
                yield child, path, st
                if stat.S_ISDIR(st.st_mode):
                    yield from walk(child)

        return walk("")

    def changes(self, container_id: str) -> list[Change]:
        """The upper dir read natively, reported as docker does: "C" for what exists in the image,
        "A" for what does not, "D" for whiteouts — and for what an opaque directory (a directory
        deleted and made again) hides."""
        lowers = self._lowers(container_id)
        out = []
        for rel, path, st in self._walk_upper(container_id):
            if whiteouts.is_overlay_whiteout(st):
                out.append(Change("D", "/" + rel))
                continue
            below = whiteouts.find_in_layers(lowers, rel)
            out.append(Change("A" if below is None else "C", "/" + rel))
            if below is not None and stat.S_ISDIR(st.st_mode) and whiteouts.is_overlay_opaque(path):
                for name in whiteouts.list_in_layers(lowers, rel) - set(os.listdir(path)):
                    out.append(Change("D", f"/{rel}/{name}"))
        return sorted(out, key=lambda c: c.path)

    def export_diff(self, container_id: str, out: BinaryIO, *,
                    source_date_epoch: int | None = None) -> archive.DiffResult:
        def entries() -> Iterator[archive.PackEntry]:
            for rel, path, st in self._walk_upper(container_id):
                if whiteouts.is_overlay_whiteout(st):
                    yield archive.PackEntry(rel, None, "whiteout")
                    continue
                yield archive.PackEntry(rel, path)
                if stat.S_ISDIR(st.st_mode) and whiteouts.is_overlay_opaque(path):
                    yield archive.PackEntry(rel, None, "opaque")

        return archive.pack(entries(), out, source_date_epoch=source_date_epoch,
                            id_shift=self.id_shift(container_id))

