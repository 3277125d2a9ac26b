"""docker cp (archive get/put) and docker export: tar streams in and out of a container.

Every path is resolved by the kernel inside the container's root (cais/storage/rootdir.py) and
every entry is read or made through the fd of its directory, never followed: a symlink planted in
the container, or swapped in during the copy, can never point a copy at the host (the tar-slip and
symlink-race classes of CVE-2018-15664 / CVE-2019-14271).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cais.engine.errors import EngineError, InvalidParameter, NotFound
from cais.engine.userns import IdMap
from cais.linux.fsids import acting_as
from cais.storage import userdb
from cais.storage.idshift import unshifted, user_namespace
from cais.storage.mountview import Bind, MountView, open_view
from cais.storage.rootdir import RootDir, components

_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET, _GO_CHARDEV = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24, 1 << 21
_GO_SETUID, _GO_SETGID, _GO_STICKY = 1 << 23, 1 << 22, 1 << 20


def go_file_mode(mode: int) -> int:
    """A unix st_mode as Go's os.FileMode (what docker's X-Docker-Container-Path-Stat carries)."""
    out = mode & 0o777
    if stat.S_ISDIR(mode):
        out |= _GO_DIR
    elif stat.S_ISLNK(mode):
        out |= _GO_SYMLINK
    elif stat.S_ISBLK(mode):
        out |= _GO_DEVICE
    elif stat.S_ISCHR(mode):
        out |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISFIFO(mode):
        out |= _GO_PIPE
    elif stat.S_ISSOCK(mode):
        out |= _GO_SOCKET
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


class ContainerFS:
    """A container's file system for the duration of a copy, as a RootDir.

    A running container is reached through /proc/PID/root: its own mount namespace's view, volumes
    and bind mounts included. It is also frozen for the copy, as docker does since CVE-2018-15664,
    though the copy no longer depends on that: every path is resolved by the kernel inside the root
    (cais/storage/rootdir.py), so a symlink swapped in by the container, or by another container
    sharing a volume and not frozen, can only ever point inside the container. A stopped container's
    root file system is mounted, with its volumes and bind mounts bound onto it in a private mount
    namespace (cais/storage/mountview.py), as docker mounts them for the copy.
    """

    def __init__(self, engine, record: dict) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.record = record
        self.mounted = False
        self.frozen = False
        self.volumes: list[str] = []
        self.view: MountView | None = None
        self.root: RootDir | None = None

    def __enter__(self) -> RootDir:
        try:
            return self._open()
        except BaseException:
            self.__exit__()
            raise

    def _open(self) -> RootDir:
        from cais import runtime
        pid = self.record["State"]["Pid"]
        if self.record["State"]["Running"] and pid:
            if not self.record["State"]["Paused"]:
                runtime.pause(self.record["Id"], root=self.engine.runtime_root)
                self.frozen = True
            self.root = RootDir.at(f"/proc/{pid}/root")
            return self.root
        rootfs = self.engine.storage.mount(self.record["Id"])
        self.mounted = True
        remap = self.engine.storage.remap(self.record["Id"])
        binds = []
        for mp in self.engine.volumes.points(self.record):
            if mp.type == "volume":
                source = self.engine.volumes.volumes.mount(mp.name, self.record["Id"])
                self.volumes.append(mp.name)
            elif mp.type == "bind":
                source = mp.source
            else:
                continue  # a tmpfs is empty while the container is stopped
            idmapped = remap is not None and (mp.type == "volume" or mp.idmap)  # as the container mounts it
            binds.append(Bind(mp.destination, source, not mp.rw, mp.subpath,
                              user_namespace(remap) if remap is not None and idmapped else None))
        from cais.volume.copyup import open_subpath
        try:
            self.view = open_view(rootfs, binds, open_subpath)
        except OSError as e:  # a bind source gone since the container was made, say
            where = f": {e.filename}" if e.filename else ""
            raise EngineError(f"mounting the container's volumes for the copy: {e.strerror or e}{where}") from None
        return self.view.root

    def __exit__(self, *_: object) -> None:
        from cais import runtime
        if self.root is not None:
            self.root.close()
        if self.view is not None:
            self.view.close()
        if self.frozen and not self.record["State"]["Paused"]:  # unless `docker pause` came meanwhile
            with contextlib.suppress(Exception):
                runtime.resume(self.record["Id"], root=self.engine.runtime_root)
        for name in self.volumes:
            with contextlib.suppress(Exception):
                self.engine.volumes.volumes.unmount(name, self.record["Id"])
        if self.mounted:
            with contextlib.suppress(Exception):
                self.engine.storage.unmount(self.record["Id"])


def _split(path: str) -> tuple[str, bool]:
    """A `docker cp` path as dockerd reads it: cleaned lexically (`..` included, as Go's
    filepath.Clean), and whether its last component is followed (a trailing `/` or `/.`)."""
    follow = path.endswith(("/", "/.")) or path == "."
    return posixpath.normpath("/" + path.lstrip("/")), follow


def _lstat(root: RootDir, clean: str, follow: bool, path: str, container: str) -> os.stat_result:
    """What `path` names (the last component followed or not), with dockerd's errors."""
    try:
        return root.stat(clean) if follow else root.lstat(clean)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as e:
        raise _error(e, clean) from None


def _error(e: OSError, clean: str) -> EngineError:
    if e.errno == errno.ELOOP:
        return EngineError(f"evalSymlinksInScope: too many links in {clean}")
    return EngineError(f"{clean}: {e.strerror or e}")


def _link_target(root: RootDir, clean: str) -> str:
    """A symlink's target fully resolved inside the container, absolute (docker's LinkTarget)."""
    try:
        fd = root.open(clean)
    except OSError as e:  # dangling: its text, made absolute (a loop is an error, as in dockerd)
        if e.errno == errno.ELOOP:
            raise _error(e, clean) from None
        parent, name = root.parent(clean)
        try:
            target = os.readlink(name, dir_fd=parent)
        finally:
            os.close(parent)
        return posixpath.normpath(posixpath.join(posixpath.dirname(clean), target))
    try:
        return root.path_of(fd)
    finally:
        os.close(fd)


def stat_header(root: RootDir, path: str, container: str) -> str:
    """Base64 JSON for X-Docker-Container-Path-Stat; `container` is the name the client gave."""
    clean, follow = _split(path)
    st = _lstat(root, clean, follow, path, container)
    link = _link_target(root, clean) if stat.S_ISLNK(st.st_mode) else ""
    from cais.engine.logs import timestamp
    name = "." if path.endswith("/.") or path == "." else posixpath.basename(clean) or "/"
    info = {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": timestamp(st.st_mtime), "linkTarget": link}
    return base64.b64encode(json.dumps(info).encode()).decode()


def _pipe_tar(build) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """Run `build(tarfile)` in a thread; yield the tar stream it writes."""
    def write(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            build(tar)
    return pipe_writer(write)


def pipe_writer(write) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """Run `write(fileobj)` in a thread; yield what it writes."""
    r, w = os.pipe()

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                write(out)
        except BrokenPipeError:
            pass  # the reader (a client) went away
        except Exception:  # the stream is already under way: the client sees it cut short; say why here
            logging.getLogger("cais.engine").exception("writing a tar stream failed")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            yield chunk
    thread.join()


def _to_container_owner(remap: IdMap | None) -> Callable[[tarfile.TarInfo], tarfile.TarInfo] | None:
    """A tarfile `filter` giving entries the owners the container sees (userns-remap), or None."""
    if remap is None:
        return None

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid = unshifted(remap, info.uid, info.gid)
        return info
    return owner


class _TreeTar:
    """Adds entries to a tar by (directory fd, name), never following a symlink: a directory is
    opened O_NOFOLLOW relative to its parent's fd before it is listed, a file before it is read,
    so nothing swapped in meanwhile can lead the walk out of the tree it started in."""

    def __init__(self, tar: tarfile.TarFile, owner: Callable[[tarfile.TarInfo], tarfile.TarInfo] | None) -> None:
        self.tar = tar
        self.owner = owner
        self.links: dict[tuple[int, int], str] = {}
        self.names: dict[tuple[str, int], str] = {}

    def add(self, dir_fd: int, name: str, arcname: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    self._put(self._info(os.fstat(fd), arcname))
                    for child in sorted(os.listdir(fd)):
                        self.add(fd, child, f"{arcname}/{child}")
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                self._file(dir_fd, name, arcname, st)
            elif stat.S_ISLNK(st.st_mode):
                info = self._info(st, arcname)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
                self._put(info)
            elif not stat.S_ISSOCK(st.st_mode):  # fifos and devices; sockets are left out, as tar does
                self._put(self._info(st, arcname))
        except (FileNotFoundError, NotADirectoryError):
            pass  # gone (or replaced) while the walk went on

    def _file(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info = self._info(st, arcname)
            info.type, info.linkname, info.size = tarfile.LNKTYPE, self.links[key], 0
            self._put(info)
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = arcname
            self._put(self._info(st, arcname), f)

    def _info(self, st: os.stat_result, arcname: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime
        info.uname, info.gname = self._name("u", st.st_uid), self._name("g", st.st_gid)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            info.type, info.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return info

    def _name(self, kind: str, num: int) -> str:
        """The daemon's name for an owner, as tar (and Go's archive/tar) records it."""
        key = (kind, num)
        if key not in self.names:
            import grp
            import pwd
            try:
                self.names[key] = pwd.getpwuid(num).pw_name if kind == "u" else grp.getgrgid(num).gr_name
            except KeyError:
                self.names[key] = ""
        return self.names[key]

    def _put(self, info: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
        self.tar.addfile(self.owner(info) if self.owner else info, data)


def get_archive(root: RootDir, path: str, container: str, remap: IdMap | None = None) -> Iterator[bytes]:
    """The tar of `path` (a directory with all below it), named as docker names it: the last
    component of the path, or `.` for the contents of `dir/.`."""
    clean, follow = _split(path)
    _lstat(root, clean, follow, path, container)
    name = "." if path.endswith("/.") or path == "." else posixpath.basename(clean) or "."
    if follow:  # the last component is followed: walk from where it leads
        fd = root.open(clean)
        try:
            clean = root.path_of(fd)
        finally:
            os.close(fd)

    def build(tar: tarfile.TarFile) -> None:
        parent, entry = root.parent(clean)
        try:
            _TreeTar(tar, _to_container_owner(remap)).add(parent, entry or ".", name)
        finally:
            os.close(parent)
    return _pipe_tar(build)


def export_rootfs(engine, record: dict) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    cid = record["Id"]
    rootfs = engine.storage.mount(cid)

    def build(tar: tarfile.TarFile) -> None:
        """Walked through fds like a copy (_TreeTar): a running container's writes cannot lead it out."""
        try:
            top = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                walk = _TreeTar(tar, _to_container_owner(engine.storage.remap(cid)))
                for entry in sorted(os.listdir(top)):
                    walk.add(top, entry, entry)
            finally:
                os.close(top)
        finally:
            with contextlib.suppress(Exception):
                engine.storage.unmount(cid)
    return _pipe_tar(build)


def check_writable(record: dict, path: str) -> None:
    """dockerd's rule before extracting: a path in a read-only volume or bind mount is refused, and
    one outside every volume when the root file system is read-only (both 500, as dockerd)."""
    from cais.engine.volumes import VolumeService
    clean, _ = _split(path)
    inside = [mp for mp in VolumeService.points(record) if mp.type in ("volume", "bind")
              and (clean == mp.destination.rstrip("/") or clean.startswith(mp.destination.rstrip("/") + "/"))]
    if inside:
        if not max(inside, key=lambda mp: len(mp.destination)).rw:
            raise EngineError("mounted volume is marked read-only")
    elif record["HostConfig"].get("ReadonlyRootfs"):
        raise EngineError("container rootfs is marked read-only")


def _member_parts(name: str, dest: str) -> list[str]:
    """A tar entry's path below the extraction point; one that climbs out is refused, as docker does."""
    clean = posixpath.normpath(name.lstrip("/") or ".")
    if clean == ".." or clean.startswith("../"):
        raise InvalidParameter(f"invalid path in archive: {name!r} is outside of {dest!r}")
    return components(clean)


def copy_owner(root: RootDir, record: dict) -> tuple[int, int] | None:
    """`cp -a` (copyUIDGID): the owner every copied entry gets — the container's user (its
    Config.User, looked up in the container's own /etc/passwd and /etc/group); None without one
    (then, as without -a, the archive's owners stay). dockerd looks the user up in the *host's*
    passwd database instead (it refuses a uid or a name the host lacks): see docs/docker-parity.md."""
    user = record["Config"].get("User") or ""
    if not user:
        return None
    try:
        found = userdb.lookup(root.read_text, user)
    except userdb.UserNotFound as e:
        raise InvalidParameter(str(e)) from None
    return found.uid, found.gid


def put_archive(root: RootDir, path: str, container: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                remap: IdMap | None = None, chown: tuple[int, int] | None = None) -> None:
    """Extract `stream` at `path` in the container, every entry owned by `chown` if given (`cp -a`,
    see `copy_owner`), else by the tar's owners; with `remap` (userns-remap), those owners are
    the container's and are shifted to the host's (an owner outside the mapping becomes the
    remapped root), and the entries are made acting as the remapped root (cais.linux.fsids). Every entry's directory is resolved inside the container root by the kernel
    (symlinks in the container followed there, as in docker's chrooted untar); the entry itself is
    made with *at calls on that directory's fd and never followed."""
    clean, _ = _split(path)  # the last component is followed: extracting to a symlink to a directory works
    if not stat.S_ISDIR(_lstat(root, clean, True, path, container).st_mode):
        raise EngineError("extraction point is not a directory")
    top = root.open(clean)
    try:
        dest = root.path_of(top)
    finally:
        os.close(top)
    owner = (remap.uid, remap.gid) if remap is not None else (0, 0)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from None
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    entry = ""
    # remapped: acting as its root, so that what is made through an idmapped volume has an owner
    with tar, (acting_as(*owner) if remap is not None else contextlib.nullcontext()):
        try:
            for member in tar:
                entry = member.name
                parts = _member_parts(member.name, path)
                if not parts:
                    continue
                inner = "/".join([dest.rstrip("/"), *parts])
                if chown is not None:
                    member.uid, member.gid = chown
                if remap is not None:
                    member.uid = remap.uid + (member.uid if 0 <= member.uid < remap.uid_size else 0)
                    member.gid = remap.gid + (member.gid if 0 <= member.gid < remap.gid_size else 0)
                parent = root.makedirs(posixpath.dirname(inner), 0o755, *owner)
                try:
                    _extract_one(root, dest, tar, member, parent, parts[-1], no_overwrite_dir_non_dir)
                finally:
                    os.close(parent)
                if member.isdir():
                    dirs.append((inner, member))
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from None
        except OSError as e:
            raise EngineError(f"extracting {entry!r} to {path}: {e.strerror or e}") from None
    for inner, member in reversed(dirs):
        with contextlib.suppress(OSError):
            fd = root.open(inner, os.O_RDONLY | os.O_DIRECTORY, follow=False)
            try:
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)


def _extract_one(root: RootDir, dest: str, tar: tarfile.TarFile, m: tarfile.TarInfo, parent: int, name: str,
                 no_overwrite: bool) -> None:
    """One entry as `name` in the directory open as `parent`."""
    try:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        is_dir = stat.S_ISDIR(existing.st_mode)
        if no_overwrite and is_dir != m.isdir():
            raise InvalidParameter(f"cannot overwrite {'directory' if is_dir else 'non-directory'}"
                                   f" {m.name!r} with {'directory' if m.isdir() else 'non-directory'}")
        if is_dir and not m.isdir():
            shutil.rmtree(name, dir_fd=parent)
        elif not is_dir:
            os.unlink(name, dir_fd=parent)
    if m.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(name, 0o700, dir_fd=parent)
        _finish(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent), m,
                times=False)
    elif m.isreg():
        src = tar.extractfile(m)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        with os.fdopen(os.dup(fd), "wb") as out:
            while src is not None and (chunk := src.read(1 << 20)):
                out.write(chunk)
        _finish(fd, m)
    elif m.isfifo():
        os.mkfifo(name, 0o600, dir_fd=parent)
        _finish(os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent), m)
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=parent)  # followed later only inside the root, by the kernel
        with contextlib.suppress(OSError):
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        with contextlib.suppress(OSError):
            os.utime(name, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
    elif m.islnk():
        source, source_name = root.parent("/".join([dest.rstrip("/"), *_member_parts(m.linkname, dest)]))
        try:
            os.link(source_name, name, src_dir_fd=source, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(source)
    # device nodes are not copied into containers


def _finish(fd: int, m: tarfile.TarInfo, *, times: bool = True) -> None:
    """Owner, mode and times of what was just made, through its fd."""
    try:
        with contextlib.suppress(OSError):
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        if times:
            os.utime(fd, (m.mtime, m.mtime))
    finally:
        os.close(fd)
