"""COPY and ADD into a mounted root filesystem, with docker's semantics.

- A directory source copies its *contents* into the destination; a file source lands in the
  destination when that ends with `/` or is an existing directory, else becomes it.
- Several sources (given, or matched by a wildcard) need a destination ending with `/`.
- Owners are 0:0 unless `--chown` (names looked up in the image's /etc/passwd and /etc/group;
  a user alone also gives the group); `--chmod` sets every copied entry's mode; modes and
  times are kept otherwise; symlinks inside a directory are copied as links.
- ADD unpacks a local tar archive (plain, gzip, bzip2 or xz) into the destination.

Paths inside the image are resolved like a chroot: an absolute symlink in the image points into
the image, never to the host, and `..` stops at the image's root.
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

_MAX_SYMLINKS = 40


class CopyError(Exception):
    """A COPY/ADD that cannot be done; the message says why."""


def scoped(root: str, path: str, *, follow: bool = True) -> str:
    """The host path of `path` inside `root`, symlinks resolved as if `root` were `/`."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        if (parts or follow) and os.path.islink(host):
            links += 1
            if links > _MAX_SYMLINKS:
                raise CopyError(f"{path}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        done.append(part)
    return os.path.join(root, *done)


def makedirs(root: str, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> str:
    """`mkdir -p` of `path` inside `root` (chroot-style); created directories get uid/gid/mode."""
    current = "/"
    for part in [p for p in path.split("/") if p and p != "."]:
        current = posixpath.join(current, part)
        host = scoped(root, current)
        if os.path.isdir(host):
            continue
        if os.path.lexists(host):
            raise CopyError(f"cannot create directory {current}: a file is in the way")
        os.mkdir(host)
        os.chmod(host, mode)
        os.chown(host, uid, gid)
    return scoped(root, path)


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
        with open(scoped(rootfs, db), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields[0] == name and len(fields) > 3:
                    return int(fields[2]), int(fields[3]) if fields[3].isdigit() else int(fields[2])
    except (OSError, ValueError):
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
    """Copies sources into `rootfs` at the image path `dest` (already absolute and expanded)."""

    def __init__(self, rootfs: str, owner: Ownership | None, chmod: int | None) -> None:
        self.rootfs = rootfs
        self.owner = owner
        self.chmod = chmod
        self._dir_times: list[tuple[str, os.stat_result]] = []

    def copy(self, sources: list[Source], dest: str, *, unpack_archives: bool = False) -> None:
        dest_is_dir = dest.endswith("/") or os.path.isdir(scoped(self.rootfs, dest))
        if len(sources) > 1 and not dest.endswith("/"):
            raise CopyError("When using COPY with more than one source file, the destination must be "
                            "a directory and end with a /")
        for src in sources:
            st = os.stat(src.path)
            if stat.S_ISDIR(st.st_mode):
                self._copy_dir(src, dest)
            elif unpack_archives and is_archive(src.path):
                self.unpack(src.path, dest)
            else:
                target = posixpath.join(dest, src.name) if dest_is_dir else dest
                self._copy_file(src.path, target, st)
        for host, st in reversed(self._dir_times):
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        self._dir_times.clear()

    def write_file(self, dest: str, name: str, data: bytes, mode: int = 0o644) -> None:
        """A here-document source (COPY <<EOF /dest)."""
        target = posixpath.join(dest, name) if dest.endswith("/") or os.path.isdir(scoped(self.rootfs, dest)) else dest
        host = self._prepare(target)
        with open(host, "wb") as f:
            f.write(data)
        self._meta(host, mode)

    def _meta(self, host: str, mode: int) -> None:
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner is not None else (0, 0)
        os.chown(host, uid, gid, follow_symlinks=False)
        if not os.path.islink(host):
            os.chmod(host, self.chmod if self.chmod is not None else stat.S_IMODE(mode))

    def _makedirs(self, path: str) -> str:
        """Missing directories of the destination: 0755, owned by --chown's user (else root)."""
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner is not None else (0, 0)
        return makedirs(self.rootfs, path, uid, gid)

    def _prepare(self, target: str) -> str:
        """Parent directories created, whatever non-directory is at `target` removed."""
        parent = self._makedirs(posixpath.dirname(target.rstrip("/")) or "/")
        host = os.path.join(parent, posixpath.basename(target.rstrip("/")))
        if os.path.lexists(host) and not os.path.isdir(host) or os.path.islink(host):
            os.unlink(host)
        elif os.path.isdir(host):
            raise CopyError(f"cannot overwrite directory {target} with a file")
        return host

    def _copy_file(self, src: str, target: str, st: os.stat_result) -> None:
        host = self._prepare(target)
        if not stat.S_ISREG(st.st_mode):
            raise CopyError(f"{target}: can only copy regular files, directories and symlinks")
        shutil.copyfile(src, host, follow_symlinks=True)
        self._meta(host, st.st_mode)
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _copy_dir(self, src: Source, dest: str) -> None:
        """The directory's contents go into `dest`; a missing `dest` is made like any missing
        directory (0755, --chown's owner), not after the source directory (docker does the same)."""
        host = scoped(self.rootfs, dest)
        if not os.path.isdir(host):
            if os.path.lexists(host):
                os.unlink(host)
            self._makedirs(dest)
        assert src.entries is not None
        for rel, path, est in src.entries():
            self._entry(posixpath.join(dest, rel), path, est)

    def _entry(self, target: str, path: str, st: os.stat_result) -> None:
        parent = self._makedirs(posixpath.dirname(target))
        host = os.path.join(parent, posixpath.basename(target))
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if os.path.lexists(host) and not os.path.isdir(host) or os.path.islink(host):
                os.unlink(host)
            if not os.path.isdir(host):
                os.mkdir(host)
            self._meta(host, mode)
            self._dir_times.append((host, st))
            return
        if os.path.isdir(host) and not os.path.islink(host):
            shutil.rmtree(host)
        elif os.path.lexists(host):
            os.unlink(host)
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(path), host)
        elif stat.S_ISREG(mode):
            shutil.copyfile(path, host, follow_symlinks=False)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(host)
        else:
            raise CopyError(f"{target}: cannot copy special file")
        self._meta(host, mode)
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def unpack(self, archive: str, dest: str) -> None:
        """Extract a local tar archive into directory `dest`, keeping its owners unless --chown."""
        self._makedirs(dest)
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for member in tar:
                    self._member(tar, member, dest)
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
            raise CopyError(f"{os.path.basename(archive)}: cannot unpack: {e}") from None

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
        """One archive entry, refused (as docker does) when it would land outside `dest`:
        through `..` or through a symlink the archive or the image put there."""
        raw = member.name.lstrip("/")
        name = posixpath.normpath("/" + raw).lstrip("/")
        if not name or name == ".":
            return
        if posixpath.normpath(raw).startswith("../") or posixpath.normpath(raw) == "..":
            raise CopyError(f"archive entry {member.name!r} is outside of {dest}")
        target = posixpath.join(dest, name)
        top = scoped(self.rootfs, dest)
        parent = self._makedirs(posixpath.dirname(target))
        if parent != top and not parent.startswith(top + "/"):
            raise CopyError(f"archive entry {member.name!r} is outside of {dest} (through a symlink)")
        host = os.path.join(parent, posixpath.basename(target))
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (member.uid, member.gid)
        if member.isdir():
            if os.path.lexists(host) and not os.path.isdir(host):
                os.unlink(host)
            if not os.path.isdir(host):
                os.mkdir(host)
        else:
            if os.path.isdir(host) and not os.path.islink(host):
                shutil.rmtree(host)
            elif os.path.lexists(host):
                os.unlink(host)
            if member.issym():
                os.symlink(member.linkname, host)
            elif member.islnk():
                link = scoped(self.rootfs, posixpath.join(dest, posixpath.normpath("/" + member.linkname).lstrip("/")),
                              follow=False)
                os.link(link, host)
                return
            elif member.isreg():
                src = tar.extractfile(member)
                assert src is not None
                with open(host, "xb") as f:
                    shutil.copyfileobj(src, f)
            elif member.isfifo():
                os.mkfifo(host)
            else:
                return  # device nodes are not created from an ADDed archive
        os.chown(host, uid, gid, follow_symlinks=False)
        if not member.issym():
            os.chmod(host, self.chmod if self.chmod is not None else member.mode & 0o7777)
        os.utime(host, (member.mtime, member.mtime), follow_symlinks=False)


def is_archive(path: str) -> bool:
    """Whether ADD should unpack `path`: a tar, possibly gzip/bzip2/xz compressed (as docker checks)."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            return tar.next() is not None
    except (OSError, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error):
        return False
