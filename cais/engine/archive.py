"""docker cp (archive get/put) and docker export: tar streams in and out of a container.

Reads and writes go through rootpath.resolve, so a symlink planted in the container can never
point a copy at the host (the tar-slip and symlink-race classes of CVE-2018-15664 / CVE-2019-14271).
A running container is reached through /proc/PID/root, which includes its bind mounts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cais.engine import rootpath
from cais.engine.errors import InvalidParameter, NotFound
from cais.engine.userns import IdMap
from cais.storage.idshift import unshifted

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
    """A container's file system for the duration of a copy.

    A running container is frozen (as docker does since CVE-2018-15664) while the copy resolves
    and walks paths through /proc/PID/root: otherwise its processes could swap a checked directory
    for a symlink to / between the check and the use, and the daemon would follow it on the host.
    """

    def __init__(self, engine, record: dict) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.record = record
        self.mounted = False
        self.frozen = False

    def __enter__(self) -> str:
        from cais import runtime
        pid = self.record["State"]["Pid"]
        if self.record["State"]["Running"] and pid:
            if not self.record["State"]["Paused"]:
                runtime.pause(self.record["Id"], root=self.engine.runtime_root)
                self.frozen = True
            return f"/proc/{pid}/root"
        self.mounted = True
        return self.engine.storage.mount(self.record["Id"])

    def __exit__(self, *_: object) -> None:
        from cais import runtime
        if self.frozen and not self.record["State"]["Paused"]:  # unless `docker pause` came meanwhile
            with contextlib.suppress(Exception):
                runtime.resume(self.record["Id"], root=self.engine.runtime_root)
        if self.mounted:
            with contextlib.suppress(Exception):
                self.engine.storage.unmount(self.record["Id"])


def _lexists(path: str) -> bool:
    return os.path.lexists(path)


def stat_header(root: str, path: str) -> str:
    """Base64 JSON for X-Docker-Container-Path-Stat."""
    host = rootpath.resolve(root, os.path.dirname(path.rstrip("/")) or "/")
    target = os.path.join(host, os.path.basename(path.rstrip("/"))) if path.rstrip("/") else root
    if not _lexists(target):
        raise NotFound(f"Could not find the file {path} in container")
    st = os.lstat(target)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(target)
        st = os.stat(rootpath.resolve(root, path)) if _lexists(rootpath.resolve(root, path)) else st
    from cais.engine.logs import timestamp
    info = {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size, "mode": go_file_mode(st.st_mode),
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


def get_archive(root: str, path: str, remap: IdMap | None = None) -> Iterator[bytes]:
    resolved = rootpath.resolve(root, path)
    if not _lexists(resolved):
        raise NotFound(f"Could not find the file {path} in container")
    name = os.path.basename(path.rstrip("/")) or "."
    if path.rstrip("/").endswith("/.") or path == ".":
        name = "."

    def build(tar: tarfile.TarFile) -> None:
        tar.add(resolved, arcname=name, recursive=True, filter=_to_container_owner(remap))
    return _pipe_tar(build)


def export_rootfs(engine, record: dict) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    cid = record["Id"]
    rootfs = engine.storage.mount(cid)

    def build(tar: tarfile.TarFile) -> None:
        try:
            for entry in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, entry), arcname=entry, recursive=True,
                        filter=_to_container_owner(engine.storage.remap(cid)))
        finally:
            with contextlib.suppress(Exception):
                engine.storage.unmount(cid)
    return _pipe_tar(build)


def _safe_name(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidParameter(f"invalid path in archive: {name!r} climbs out of the destination")
    return parts


def put_archive(root: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                remap: IdMap | None = None) -> None:
    """Extract `stream` at `path` in the container rootfs `root`; with `remap` (userns-remap), the
    tar's owners are the container's and are shifted to the host's (an owner outside the mapping
    becomes the remapped root)."""
    dest = rootpath.resolve(root, path)
    if not os.path.isdir(dest):
        if not _lexists(dest):
            raise NotFound(f"Could not find the file {path} in container")
        raise InvalidParameter(f"extraction point is not a directory: {path}")
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from None
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tar:
        try:
            for member in tar:
                parts = _safe_name(member.name)
                if not parts:
                    continue
                inner = "/".join([path.rstrip("/"), *parts])
                parent = rootpath.resolve(root, os.path.dirname(inner))
                os.makedirs(parent, exist_ok=True)
                target = os.path.join(parent, parts[-1])
                if remap is not None:
                    member.uid = remap.uid + (member.uid if 0 <= member.uid < remap.uid_size else 0)
                    member.gid = remap.gid + (member.gid if 0 <= member.gid < remap.gid_size else 0)
                _extract_one(root, path, tar, member, target, no_overwrite_dir_non_dir)
                if member.isdir():
                    dirs.append((target, member))
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from None
    for target, member in reversed(dirs):
        with contextlib.suppress(OSError):
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _extract_one(root: str, base: str, tar: tarfile.TarFile, m: tarfile.TarInfo, target: str,
                 no_overwrite: bool) -> None:
    existing = os.lstat(target) if _lexists(target) else None
    if existing is not None:
        if no_overwrite and stat.S_ISDIR(existing.st_mode) != m.isdir():
            raise InvalidParameter(f"cannot overwrite {'directory' if stat.S_ISDIR(existing.st_mode) else 'non-directory'}"
                                   f" {m.name!r} with {'directory' if m.isdir() else 'non-directory'}")
        if not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            if stat.S_ISDIR(existing.st_mode):
                import shutil
                shutil.rmtree(target)
            else:
                os.unlink(target)
    if m.isdir():
        os.makedirs(target, mode=m.mode & 0o7777, exist_ok=True)
    elif m.isreg():
        src = tar.extractfile(m)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            while src is not None and (chunk := src.read(1 << 20)):
                out.write(chunk)
    elif m.issym():
        os.symlink(m.linkname, target)  # its target is only ever followed through rootpath.resolve
    elif m.islnk():
        source = rootpath.resolve(root, "/".join([base.rstrip("/"), *_safe_name(m.linkname)]))
        os.link(source, target, follow_symlinks=False)
    elif m.isfifo():
        os.mkfifo(target, m.mode & 0o777)
    else:
        return  # device nodes are not copied into containers
    with contextlib.suppress(OSError):
        os.lchown(target, m.uid, m.gid)
    if not m.issym():
        os.chmod(target, m.mode & 0o7777)
        os.utime(target, (m.mtime, m.mtime))
