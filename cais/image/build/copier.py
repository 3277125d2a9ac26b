"""COPY and ADD into a mounted root filesystem, with docker's semantics.

- A directory source copies its *contents* into the destination; a file source lands in the
  destination when that ends with `/` or is an existing directory, else becomes it.
- Several sources (given, or matched by a wildcard) need a destination ending with `/`.
- Owners are 0:0 unless `--chown` (names looked up in the image's /etc/passwd and /etc/group;
  a user alone also gives the group); `--chmod` sets every copied entry's mode; modes and
  times are kept otherwise; symlinks inside a directory are copied as links.
- ADD unpacks a local tar archive (plain, gzip, bzip2 or xz) into the destination.

Paths inside the image are resolved by the kernel like a chroot (cais/storage/rootdir.py): an
absolute symlink in the image points into the image, never to the host, and `..` stops at the
image's root.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cais.storage.rootdir import RootDir, read_text

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EXISTING = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class CopyError(Exception):
    """A COPY/ADD that cannot be done; the message says why."""


def _image_root(rootfs: str) -> RootDir:
    """An image's root file system: paths resolved by the kernel inside it, never across a mount."""
    return RootDir.at(rootfs, cross_mounts=False)


def scoped(root: str, path: str, *, follow: bool = True) -> str:
    """The host path of `path` inside `root`, symlinks resolved by the kernel as if `root` were `/`
    (RootDir.host_path) — for the builder's checks and bind sources; copies work on fds."""
    try:
        with _image_root(root) as r:
            return r.host_path(path, follow=follow)
    except OSError as e:
        raise CopyError(f"{path}: {(e.strerror or str(e)).lower()}") from None


def makedirs(root: str, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> None:
    """`mkdir -p` of `path` inside `root` (chroot-style); created directories get uid/gid/mode."""
    with _image_root(root) as r:
        os.close(_makedirs_in(r, path, uid, gid, mode))


def _makedirs_in(root: RootDir, path: str, uid: int, gid: int, mode: int = 0o755) -> int:
    try:
        return root.makedirs(path, mode, uid, gid)
    except (NotADirectoryError, FileNotFoundError, FileExistsError):
        raise CopyError(f"cannot create directory {path}: a file is in the way") from None
    except OSError as e:
        raise CopyError(f"cannot create directory {path}: {(e.strerror or str(e)).lower()}") from None


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _copy_data(src: str, out: int) -> None:
    with open(src, "rb") as f:
        while os.sendfile(out, f.fileno(), None, 1 << 30):
            pass


@dataclass
class Source:
    """One thing to copy: `path` on the host (symlinks already resolved), the name it gets in a
    destination directory, and for a directory its entries (relative path, host path, lstat)."""

    name: str
    path: str
    entries: Callable[[], Iterator[tuple[str, str, os.stat_result]]] | None = None


def tree_entries(top: str) -> Callable[[], Iterator[tuple[str, str, os.stat_result]]]:
    """All entries below `top`, sorted, parents first (for sources that have no .dockerignore)."""
    def walk(rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
        for name in sorted(os.listdir(os.path.join(top, rel))):
            child = posixpath.join(rel, name) if rel else name
            host = os.path.join(top, child)
            st = os.lstat(host)
            yield child, host, st
            if stat.S_ISDIR(st.st_mode):
                yield from walk(child)
    return lambda: walk("")


@dataclass
class Ownership:
    uid: int
    gid: int


def lookup_chown(spec: str, rootfs: str) -> Ownership:
    """--chown=user[:group] with names from the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    uid, primary = _lookup(rootfs, "etc/passwd", user, "user")
    if group:
        gid, _ = _lookup(rootfs, "etc/group", group, "group")
    else:
        gid = primary if not user.isdigit() else uid
    return Ownership(uid, gid)


def _lookup(rootfs: str, db: str, name: str, what: str) -> tuple[int, int]:
    if name.isdigit():
        return int(name), int(name)
    try:
        for line in (read_text(rootfs, db) or "").splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) > 3:
                return int(fields[2]), int(fields[3]) if fields[3].isdigit() else int(fields[2])
    except ValueError:
        pass
    raise CopyError(f"unable to find {what} {name}: no matching entries in {what} file")


def parse_chmod(spec: str) -> int:
    try:
        mode = int(spec, 8)
    except ValueError:
        raise CopyError(f"invalid --chmod value {spec!r}: only octal modes are supported") from None
    if mode > 0o7777 or mode < 0:
        raise CopyError(f"invalid --chmod value {spec!r}")
    return mode


class Copier:
    """Copies sources into `rootfs` at the image path `dest` (already absolute and expanded).

    Each entry is made with *at calls in the directory fd the kernel resolved inside the image
    (cais/storage/rootdir.py), its last component never followed; owner, mode and times are set
    through an fd of what was made."""

    def __init__(self, rootfs: str, owner: Ownership | None, chmod: int | None) -> None:
        self.rootfs = rootfs
        self.owner = owner
        self.chmod = chmod
        self._root: RootDir | None = None
        self._dir_times: list[tuple[str, os.stat_result]] = []

    @property
    def root(self) -> RootDir:
        assert self._root is not None
        return self._root

    def copy(self, sources: list[Source], dest: str, *, unpack_archives: bool = False) -> None:
        if len(sources) > 1 and not dest.endswith("/"):
            raise CopyError("When using COPY with more than one source file, the destination must be "
                            "a directory and end with a /")
        with _image_root(self.rootfs) as self._root:
            dest_is_dir = dest.endswith("/") or self.root.isdir(dest)
            for src in sources:
                st = os.stat(src.path)
                if stat.S_ISDIR(st.st_mode):
                    self._copy_dir(src, dest)
                elif unpack_archives and is_archive(src.path):
                    self._unpack(src.path, dest)
                else:
                    target = posixpath.join(dest, src.name) if dest_is_dir else dest
                    self._copy_file(src.path, target, st)
            for inner, st in reversed(self._dir_times):
                self._utime(inner, st.st_atime_ns, st.st_mtime_ns)
            self._dir_times.clear()
        self._root = None

    def write_file(self, dest: str, name: str, data: bytes, mode: int = 0o644) -> None:
        """A here-document source (COPY <<EOF /dest)."""
        with _image_root(self.rootfs) as self._root:
            target = posixpath.join(dest, name) if dest.endswith("/") or self.root.isdir(dest) else dest
            parent, base = self._prepare(self._follow(target))
            try:
                fd = os.open(base, _NEW_FILE, 0o600, dir_fd=parent)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                self._meta(parent, base, mode)
            finally:
                os.close(parent)
        self._root = None

    def _ids(self) -> tuple[int, int]:
        return (self.owner.uid, self.owner.gid) if self.owner is not None else (0, 0)

    def _meta(self, parent: int, name: str, mode: int, times: tuple[int, int] | None = None,
              ids: tuple[int, int] | None = None) -> None:
        """Owner (--chown's, else `ids` or 0:0), mode (--chmod's, else `mode`) and times (ns) of the
        entry just made as `name` in `parent`; a symlink's own, never its target's."""
        uid, gid = ids if ids is not None and self.owner is None else self._ids()
        if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            if times is not None:
                os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)
            return
        fd = os.open(name, _EXISTING, dir_fd=parent)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, self.chmod if self.chmod is not None else stat.S_IMODE(mode))
            if times is not None:
                os.utime(fd, ns=times)
        finally:
            os.close(fd)

    def _utime(self, inner: str, atime_ns: int, mtime_ns: int) -> None:
        fd = self.root.open(inner, os.O_RDONLY | os.O_DIRECTORY, follow=False)
        try:
            os.utime(fd, ns=(atime_ns, mtime_ns))
        finally:
            os.close(fd)

    def _parent(self, target: str) -> tuple[int, str]:
        """The directory fd that will hold `target` (missing directories made: 0755, owned by
        --chown's user, else root) and the name `target` gets in it."""
        path = target.rstrip("/")
        return _makedirs_in(self.root, posixpath.dirname(path) or "/", *self._ids()), posixpath.basename(path)

    def _prepare(self, target: str) -> tuple[int, str]:
        """Parent directories made, whatever non-directory is at `target` removed."""
        parent, name = self._parent(target)
        existing = _lstat_at(parent, name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            os.close(parent)
            raise CopyError(f"cannot overwrite directory {target} with a file")
        if existing is not None:
            os.unlink(name, dir_fd=parent)
        return parent, name

    def _follow(self, target: str) -> str:
        """A file's destination with every symlink followed, the last and dangling ones too (as
        docker writes a COPY through a symlink at the destination), inside the image."""
        try:
            return self.root.resolve(target)
        except OSError as e:
            raise CopyError(f"{target}: {(e.strerror or str(e)).lower()}") from None

    def _copy_file(self, src: str, target: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise CopyError(f"{target}: can only copy regular files, directories and symlinks")
        parent, name = self._prepare(self._follow(target))
        try:
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
            try:
                _copy_data(src, fd)
            finally:
                os.close(fd)
            self._meta(parent, name, st.st_mode, (st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(parent)

    def _copy_dir(self, src: Source, dest: str) -> None:
        """The directory's contents go into `dest`; a missing `dest` is made like any missing
        directory (0755, --chown's owner), not after the source directory (docker does the same)."""
        if not self.root.isdir(dest):
            parent, name = self._parent(dest)
            try:
                if name and _lstat_at(parent, name) is not None:
                    os.unlink(name, dir_fd=parent)
            finally:
                os.close(parent)
            os.close(_makedirs_in(self.root, dest, *self._ids()))
        assert src.entries is not None
        for rel, path, est in src.entries():
            self._entry(posixpath.join(dest, rel), path, est)

    def _entry(self, target: str, path: str, st: os.stat_result) -> None:
        parent, name = self._parent(target)
        try:
            self._entry_at(parent, name, target, path, st)
        finally:
            os.close(parent)

    def _entry_at(self, parent: int, name: str, target: str, path: str, st: os.stat_result) -> None:
        mode = st.st_mode
        existing = _lstat_at(parent, name)
        if stat.S_ISDIR(mode):
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=parent)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            self._meta(parent, name, mode)
            self._dir_times.append((target, st))
            return
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(name, dir_fd=parent)
        elif existing is not None:
            os.unlink(name, dir_fd=parent)
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(path), name, dir_fd=parent)
        elif stat.S_ISREG(mode):
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
            try:
                _copy_data(path, fd)
            finally:
                os.close(fd)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=parent)
        else:
            raise CopyError(f"{target}: cannot copy special file")
        self._meta(parent, name, mode, (st.st_atime_ns, st.st_mtime_ns))

    def _unpack(self, archive: str, dest: str) -> None:
        """Extract a local tar archive into directory `dest`, keeping its owners unless --chown."""
        top_fd = _makedirs_in(self.root, dest, *self._ids())
        try:
            top = self.root.path_of(top_fd)
        finally:
            os.close(top_fd)
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for member in tar:
                    self._member(tar, member, dest, top)
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
            raise CopyError(f"{os.path.basename(archive)}: cannot unpack: {e}") from None

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str, top: str) -> None:
        """One archive entry, refused (as docker does) when it would land outside `dest`:
        through `..` or through a symlink the archive or the image put there."""
        raw = member.name.lstrip("/")
        name = posixpath.normpath("/" + raw).lstrip("/")
        if not name or name == ".":
            return
        if posixpath.normpath(raw).startswith("../") or posixpath.normpath(raw) == "..":
            raise CopyError(f"archive entry {member.name!r} is outside of {dest}")
        target = posixpath.join(dest, name)
        parent, base = self._parent(target)
        try:
            where = self.root.path_of(parent)
            if where != top and not where.startswith(top.rstrip("/") + "/"):
                raise CopyError(f"archive entry {member.name!r} is outside of {dest} (through a symlink)")
            self._member_at(tar, member, parent, base, dest)
        finally:
            os.close(parent)

    def _member_at(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, name: str, dest: str) -> None:
        existing = _lstat_at(parent, name)
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=parent)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
        else:
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                shutil.rmtree(name, dir_fd=parent)
            elif existing is not None:
                os.unlink(name, dir_fd=parent)
            if member.issym():
                os.symlink(member.linkname, name, dir_fd=parent)
            elif member.islnk():
                link = posixpath.join(dest, posixpath.normpath("/" + member.linkname).lstrip("/"))
                source, source_name = self.root.parent(link)
                try:
                    os.link(source_name, name, src_dir_fd=source, dst_dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(source)
                return
            elif member.isreg():
                src = tar.extractfile(member)
                assert src is not None
                with open(os.open(name, _NEW_FILE, 0o600, dir_fd=parent), "wb") as f:
                    shutil.copyfileobj(src, f)
            elif member.isfifo():
                os.mkfifo(name, 0o600, dir_fd=parent)
            else:
                return  # device nodes are not created from an ADDed archive
        mtime = int(member.mtime * 1e9)
        self._meta(parent, name, member.mode, (mtime, mtime), (member.uid, member.gid))


def is_archive(path: str) -> bool:
    """Whether ADD should unpack `path`: a tar, possibly gzip/bzip2/xz compressed (as docker checks)."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            return tar.next() is not None
    except (OSError, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error):
        return False
