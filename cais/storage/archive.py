"""Unpacking a layer tar into a directory, and packing a directory's changes into one.

Unpacking streams: headers and data go straight from the (decompressing) reader to the file system,
with no temporary copy. Every path is resolved inside the layer's directory with openat2
RESOLVE_IN_ROOT, so `../`, absolute paths, symlinks (from this layer or, for vfs, a lower one) and
hard-link targets can never reach outside it — the kernel clamps them at the layer root, like the
chroot docker unpacks in. The final component is never followed: an existing entry of that name is
removed and replaced, never written through. Paths that go above the root lexically (`../x`) are
refused outright, as docker does.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cais.linux import fs
from cais.storage import tarstream, whiteouts
from cais.storage.compression import decompressed
from cais.storage.errors import InvalidLayer, StorageError
from cais.storage.idshift import IdShift, rooted, unshifted
from cais.storage.tarstream import Header

CHUNK = 1 << 20
MAX_DEPTH = 512
EMPTY_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # 1024 zero bytes
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_IGNORED_XATTR_ERRORS = (errno.ENOTSUP, errno.EPERM)


@dataclass(frozen=True)
class DiffResult:
    diff_id: str   # "sha256:…" of the uncompressed tar
    size: int      # bytes of file content the layer holds (what `docker images` adds up)
    tar_size: int  # bytes of the uncompressed tar


def _show(name: str) -> str:
    """An entry name fit for a one-line error: quoted, escaped, and shortened if long."""
    text = repr(name)
    return text if len(text) <= 120 else f"{text[:60]}…{text[-50:]}"


def clean_path(name: str) -> str:
    """A tar entry name as a relative path with no '.', '..' or empty components ('' is the root).
    A leading '/' is dropped (as tar does); '..' reaching above the root is refused, and so is
    nesting deeper than MAX_DEPTH (which recursive tree walks and per-level descriptors rely on)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidLayer(f"{_show(name)}: path escapes the layer ('..' above its root)")
            parts.pop()
        else:
            parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise InvalidLayer(f"{_show(name)}: nested deeper than {MAX_DEPTH} directories")
    return "/".join(parts)


def _split(path: str) -> tuple[str, str]:
    parent, _, base = path.rpartition("/")
    return parent, base


class Unpacker:
    """Apply one layer tar to the directory open as `root_fd`.

    whiteout_mode "overlay" stores whiteouts as OverlayFS expects (char device 0/0, opaque xattr);
    "delete" applies them by deleting from the directory (vfs, whose layers are full copies).
    """

    def __init__(self, root_fd: int, whiteout_mode: str, lowers: Sequence[str] = ()) -> None:
        assert whiteout_mode in ("overlay", "delete")
        self.root_fd = root_fd
        self.mode = whiteout_mode
        self.lowers = lowers  # overlay: the parent layers' directories, top first
        self.size = 0
        self._dirs: dict[str, int] = {}          # parent path -> O_PATH fd, resolved in root
        # directory -> mtime to set once its contents are in: the entry's own, or for a directory
        # this layer only writes into, the one it had before (as umoci does)
        self._dir_times: dict[str, int] = {"": os.fstat(root_fd).st_mtime_ns}
        self._touched: set[str] = {""}           # paths this layer wrote (kept by an opaque marker)

    # --- resolving directories inside the root ---------------------------------------------------

    def _dir(self, path: str, create: bool = True) -> int:
        """An O_PATH fd of directory `path`, resolved in root; missing parents are made (0755, root)."""
        if not path:
            return self.root_fd
        fd = self._dirs.get(path)
        if fd is not None:
            return fd
        try:
            fd = fs.open_in_root(self.root_fd, path)
            self._dir_times.setdefault(path, os.fstat(fd).st_mtime_ns)
        except FileNotFoundError:
            if not create:
                raise
            parent, base = _split(path)
            parent_fd = self._dir(parent)
            try:
                os.mkdir(base, 0o755, dir_fd=parent_fd)
            except FileExistsError:
                st = self._lstat(parent_fd, base)
                what = "a symlink leading outside the layer (or nowhere)" if st and stat.S_ISLNK(st.st_mode) \
                    else "not a directory"
                raise InvalidLayer(f"{_show(path)} is {what}: refusing to write through it") from None
            self._inherit(parent_fd, base, path)
            fd = fs.open_in_root(self.root_fd, path)
        except NotADirectoryError:
            raise InvalidLayer(f"{_show(path)}: a path component is not a directory") from None
        if len(self._dirs) >= 512:
            self._forget("")
        self._dirs[path] = fd
        return fd

    def _inherit(self, parent_fd: int, base: str, path: str) -> None:
        """Give a directory this layer creates only as a parent the owner, mode, xattrs and mtime it
        has in the lower layers, so that the overlay shows it unchanged (a lower /tmp stays 1777)."""
        below = whiteouts.find_in_layers(self.lowers, path) if self.lowers else None
        if below is None:
            return
        st = os.lstat(below)
        if not stat.S_ISDIR(st.st_mode):
            return
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            for key in os.listxattr(below, follow_symlinks=False):
                if not key.startswith(whiteouts.OVERLAY_XATTR_PREFIX):
                    with contextlib.suppress(OSError):
                        os.setxattr(fd, key, os.getxattr(below, key, follow_symlinks=False))
        finally:
            os.close(fd)
        self._dir_times[path] = st.st_mtime_ns

    def _forget(self, path: str) -> None:
        """Drop cached directory fds at or below `path` (after it was removed or replaced)."""
        prefix = path + "/"
        for key in [k for k in self._dirs if not path or k == path or k.startswith(prefix)]:
            os.close(self._dirs.pop(key))

    def close(self) -> None:
        self._forget("")

    def _remove(self, dir_fd: int, base: str, path: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(base, dir_fd=dir_fd)
        else:
            os.unlink(base, dir_fd=dir_fd)
        self._forget(path)
        self._dir_times.pop(path, None)

    def _lstat(self, dir_fd: int, base: str) -> os.stat_result | None:
        try:
            return os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    # --- entries ---------------------------------------------------------------------------------

    def apply(self, reader: tarstream.TarReader) -> None:
        for header in reader:
            try:
                self._entry(header, reader)
            except StorageError:
                raise
            except OSError as e:
                raise InvalidLayer(f"{_show(header.name)}: {e.strerror or e}") from None
            except (ValueError, OverflowError) as e:  # NUL bytes in names, out-of-range ids or times
                raise InvalidLayer(f"{_show(header.name)}: invalid entry ({e})") from None
        self._set_dir_times()

    def _touch(self, path: str) -> None:
        if self.mode != "delete":
            return  # only vfs's opaque markers ask what this layer wrote
        while path not in self._touched:
            self._touched.add(path)
            path = _split(path)[0]

    def _entry(self, h: Header, reader: tarstream.TarReader) -> None:
        path = clean_path(h.name)
        if not path:
            if h.type != tarstream.DIR:
                raise InvalidLayer(f"{_show(h.name)}: the layer root must be a directory")
            fd = os.open(".", _DIR_FLAGS, dir_fd=self.root_fd)
            try:
                self._set_meta(fd, h)
            finally:
                os.close(fd)
            self._dir_times[""] = h.mtime_ns
            return
        parent, base = _split(path)
        try:
            wh = whiteouts.classify(base)
        except InvalidLayer as e:
            raise InvalidLayer(f"{_show(h.name)}: {e}") from None
        if wh is not None:
            self._whiteout(parent, *wh)
            return
        self._touch(path)
        dir_fd = self._dir(parent)
        try:
            self._create(h, dir_fd, base, path, reader)
        except FileExistsError:  # rarer than not: look only now
            existing = self._lstat(dir_fd, base)
            if existing is not None and h.type == tarstream.DIR and stat.S_ISDIR(existing.st_mode):
                fd = os.open(base, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._set_meta(fd, h)
                finally:
                    os.close(fd)
                self._dir_times[path] = h.mtime_ns
                return
            if existing is not None:
                self._remove(dir_fd, base, path, existing)
            self._create(h, dir_fd, base, path, reader)

    def _create(self, h: Header, dir_fd: int, base: str, path: str, reader: tarstream.TarReader) -> None:
        """Make the entry; FileExistsError (before anything is written) if the name is taken."""
        t = h.type
        if h.is_file:
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
            try:
                while chunk := reader.read_data(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                self.size += h.size
                self._set_meta(fd, h)
                os.utime(fd, ns=(h.mtime_ns, h.mtime_ns))
            finally:
                os.close(fd)
        elif t == tarstream.DIR:
            os.mkdir(base, 0o700, dir_fd=dir_fd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                self._set_meta(fd, h)
            finally:
                os.close(fd)
            self._dir_times[path] = h.mtime_ns
        elif t == tarstream.SYM:
            if not h.linkname:
                raise InvalidLayer(f"{_show(h.name)}: symlink with an empty target")
            os.symlink(h.linkname, base, dir_fd=dir_fd)
            self._set_meta_nofollow(dir_fd, base, h)
        elif t == tarstream.LNK:
            self._hardlink(dir_fd, base, h)
        elif t in (tarstream.CHR, tarstream.BLK, tarstream.FIFO):
            kind = {tarstream.CHR: stat.S_IFCHR, tarstream.BLK: stat.S_IFBLK, tarstream.FIFO: stat.S_IFIFO}[t]
            os.mknod(base, kind | 0o600, os.makedev(h.devmajor, h.devminor), dir_fd=dir_fd)
            self._set_meta_nofollow(dir_fd, base, h)
        else:
            raise InvalidLayer(f"{_show(h.name)}: unsupported tar entry type {t!r}")

    def _hardlink(self, dir_fd: int, base: str, h: Header) -> None:
        target = clean_path(h.linkname)
        if not target:
            raise InvalidLayer(f"{_show(h.name)}: hard link to the layer root")
        tparent, tbase = _split(target)
        try:
            tdir = self._dir(tparent, create=False)
            # flags=0 (follow_symlinks=False): a symlink target is linked itself, never followed.
            os.link(tbase, base, src_dir_fd=tdir, dst_dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidLayer(f"{_show(h.name)}: hard link target {_show(h.linkname)} is not in this layer") from None
        except PermissionError:
            raise InvalidLayer(f"{_show(h.name)}: cannot hard link to {_show(h.linkname)} (a directory?)") from None

    def _set_meta(self, fd: int, h: Header) -> None:
        """Owner, then mode (chown clears setuid bits), then xattrs (chown clears capabilities)."""
        os.fchown(fd, h.uid, h.gid)
        os.fchmod(fd, h.mode)
        for key, value in h.xattrs.items():
            self._setxattr(fd, key, value, h)

    def _set_meta_nofollow(self, dir_fd: int, base: str, h: Header) -> None:
        os.chown(base, h.uid, h.gid, dir_fd=dir_fd, follow_symlinks=False)
        st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(base, h.mode, dir_fd=dir_fd)  # a node this unpack just made: not a symlink
        for key, value in h.xattrs.items():
            self._setxattr(fs.fd_path(dir_fd, base), key, value, h)
        os.utime(base, ns=(h.mtime_ns, h.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)

    def _setxattr(self, target: int | str, key: str, value: bytes, h: Header) -> None:
        if key.startswith(whiteouts.OVERLAY_XATTR_PREFIX):
            return  # a layer must not steer OverlayFS (opaque, redirect, metacopy): dropped
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _IGNORED_XATTR_ERRORS:
                raise InvalidLayer(f"{_show(h.name)}: cannot set xattr {key}: {e.strerror}") from None

    def _whiteout(self, parent: str, kind: whiteouts.Kind, target: str) -> None:
        if kind is whiteouts.Kind.META:
            return
        if self.mode == "overlay":
            self._touch(parent)
            dir_fd = self._dir(parent)
            if kind is whiteouts.Kind.OPAQUE:
                fd = fs.open_in_root(self.root_fd, parent, _DIR_FLAGS)
                try:
                    whiteouts.set_overlay_opaque(fd)
                finally:
                    os.close(fd)
                return
            path = f"{parent}/{target}" if parent else target
            existing = self._lstat(dir_fd, target)
            if existing is not None:
                self._remove(dir_fd, target, path, existing)
            whiteouts.make_overlay_whiteout(dir_fd, target)
            return
        try:
            dir_fd = self._dir(parent, create=False)
        except (FileNotFoundError, InvalidLayer):
            return  # nothing there to delete
        if kind is whiteouts.Kind.OPAQUE:
            self._prune(parent, dir_fd)
            return
        path = f"{parent}/{target}" if parent else target
        existing = self._lstat(dir_fd, target)
        if existing is not None:
            self._remove(dir_fd, target, path, existing)

    def _prune(self, path: str, dir_fd: int) -> None:
        """Delete from directory `path` everything this layer did not write (an opaque marker, vfs)."""
        fd = os.open(".", _DIR_FLAGS, dir_fd=dir_fd)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        for name in names:
            child = f"{path}/{name}" if path else name
            st = self._lstat(dir_fd, name)
            if st is None:
                continue
            if child not in self._touched:
                self._remove(dir_fd, name, child, st)
            elif stat.S_ISDIR(st.st_mode):
                self._prune(child, self._dir(child, create=False))

    def _set_dir_times(self) -> None:
        for path in sorted(self._dir_times, key=lambda p: p.count("/") + (1 if p else 0), reverse=True):
            ns = self._dir_times[path]
            parent, base = _split(path)
            try:
                if not base:
                    os.utime(self.root_fd, ns=(ns, ns))
                else:
                    os.utime(base, ns=(ns, ns), dir_fd=self._dir(parent, create=False), follow_symlinks=False)
            except (FileNotFoundError, InvalidLayer):
                continue


def unpack(stream: BinaryIO, dest: str, whiteout_mode: str, *, lowers: Sequence[str] = (),
           max_size: int | None = None, guard: Callable[[], None] | None = None) -> DiffResult:
    """Unpack the layer `stream` (tar, gzip or zstd) into the existing directory `dest`."""
    root_fd = os.open(dest, _DIR_FLAGS)
    unpacker = Unpacker(root_fd, whiteout_mode, lowers)
    try:
        with decompressed(stream) as source, tarstream.LimitedDigestReader(source, max_size, guard) as counted:
            reader = tarstream.TarReader(io.BufferedReader(counted, CHUNK))
            unpacker.apply(reader)
            reader.drain()
            digest = counted.sha256.hexdigest()
    finally:
        unpacker.close()
        os.close(root_fd)
    return DiffResult(f"sha256:{digest}", unpacker.size, counted.count)


# --- packing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackEntry:
    """One entry of a diff tar: `path` (relative) copied from `source` (a path on disk) when kind is
    "entry"; a `.wh.` whiteout of `path` for "whiteout"; the opaque marker of directory `path` for
    "opaque"."""
    path: str
    source: str | None
    kind: str = "entry"


class _DigestWriter(io.RawIOBase):
    def __init__(self, out: BinaryIO) -> None:
        import hashlib
        self._out = out
        self.sha256 = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self._out.write(b)
        self.sha256.update(b)
        self.count += len(b)
        return len(b)


_CAP_HEADER = "SCHILY.xattr.security.capability"


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for key in sorted(names):
        if key.startswith(whiteouts.OVERLAY_XATTR_PREFIX):
            continue
        try:
            out[f"SCHILY.xattr.{key}"] = os.getxattr(path, key, follow_symlinks=False).decode("utf-8", "surrogateescape")
        except OSError:
            continue
    return out


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _whiteout_info(entry: PackEntry, source_date_epoch: int | None) -> tarfile.TarInfo:
    parent, base = _split(entry.path)
    if entry.kind == "opaque":
        parent, base = entry.path, whiteouts.OPAQUE
    else:
        base = whiteouts.PREFIX + base
    info = tarfile.TarInfo(f"{parent}/{base}" if parent else base)
    info.uname = info.gname = ""
    info.mtime = source_date_epoch or 0
    info.mode = 0o644
    return info


def _entry_info(entry: PackEntry, st: os.stat_result, source_date_epoch: int | None) -> tarfile.TarInfo | None:
    """The header of an entry copied from disk (size and hard links are the caller's); None for
    what tar does not archive (sockets)."""
    assert entry.source is not None
    info = tarfile.TarInfo(entry.path)
    info.uname = info.gname = ""
    mtime = int(st.st_mtime)
    info.mtime = min(mtime, source_date_epoch) if source_date_epoch is not None else mtime
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.pax_headers = _xattrs(entry.source)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.source)
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        return None
    return info


def pack(entries: Iterable[PackEntry], out: BinaryIO, *, source_date_epoch: int | None = None,
         id_shift: IdShift | None = None) -> DiffResult:
    """Write `entries` (already in order) as a PAX tar to `out`: numeric owners (shifted back to
    the container's with `id_shift`, userns-remap), no user/group names, mtimes clamped to
    `source_date_epoch`, hard links kept. Returns the tar's digest."""
    writer = _DigestWriter(out)
    size = 0
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:  # type: ignore[call-overload]
        for entry in entries:
            if entry.kind != "entry":
                tar.addfile(_whiteout_info(entry, source_date_epoch))
                continue
            assert entry.source is not None
            try:
                st = os.lstat(entry.source)
                info = _entry_info(entry, st, source_date_epoch)
                if info is None:
                    continue
                if id_shift is not None:
                    info.uid, info.gid = unshifted(id_shift, info.uid, info.gid)
                    caps = info.pax_headers.get(_CAP_HEADER)
                    if caps is not None:
                        info.pax_headers[_CAP_HEADER] = rooted(caps.encode("utf-8", "surrogateescape"), 0).decode(
                            "utf-8", "surrogateescape")
                if info.type != tarfile.REGTYPE:
                    tar.addfile(info)
                elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                    info.type, info.linkname = tarfile.LNKTYPE, seen[(st.st_dev, st.st_ino)]
                    tar.addfile(info)
                else:
                    seen[(st.st_dev, st.st_ino)] = entry.path
                    info.size = st.st_size
                    with open(entry.source, "rb", opener=_nofollow) as f:
                        tar.addfile(info, f)
                    size += st.st_size
            except OSError as e:  # e.g. a file the container is changing under us
                raise StorageError(f"cannot export {_show(entry.path)}: {e.strerror or e}") from None
    return DiffResult(f"sha256:{writer.sha256.hexdigest()}", size, writer.count)
