"""Copy-up: an empty volume mounted over a path the image populates is first filled from the image.

Docker's behaviour (off with `nocopy`): files, directories, symlinks, device nodes and fifos, with
owners, modes, timestamps, extended attributes and hard links kept. The source path is resolved
with openat2(RESOLVE_IN_ROOT), so an image's symlink cannot point the copy at the host; below it
every open is O_NOFOLLOW relative to a directory fd, so nothing is followed anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from cais.linux.fs import fd_path, open_in_root
from cais.linux.openat2 import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def source_is_dir(rootfs: str, path: str) -> bool | None:
    """Whether `path` in the rootfs is a directory (None when it does not exist)."""
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root, path.lstrip("/"), os.O_PATH)
    except FileNotFoundError:
        return None
    finally:
        os.close(root)
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def open_subpath(volume: str, subpath: str) -> int:
    """An O_PATH fd of `subpath` inside the volume: no `..`, no symlink, no other mount on the way,
    so neither a container's earlier writes nor a race can point the mount outside the volume."""
    top = os.open(volume, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return openat2(top, subpath, os.O_PATH | os.O_CLOEXEC,
                       RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
    finally:
        os.close(top)


def is_empty(path: str) -> bool:
    fd = os.open(path, _DIR)
    try:
        with os.scandir(fd) as it:
            return next(it, None) is None
    finally:
        os.close(fd)


def copy_up(rootfs: str, path: str, volume: str) -> bool:
    """Fill the empty directory `volume` with `path` of `rootfs`; False if there was nothing to copy."""
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            src = open_in_root(root, path.lstrip("/"), os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return False
    finally:
        os.close(root)
    try:
        dst = os.open(volume, _DIR)
        try:
            with os.scandir(dst) as it:
                if next(it, None) is not None:
                    return False
            links: dict[tuple[int, int], tuple[int, str]] = {}
            try:
                _copy_tree(src, dst, links)
            finally:
                for fd in {fd for fd, _ in links.values()}:
                    os.close(fd)
            _copy_meta(src, dst, "", os.fstat(src))  # docker copies the directory's owner and mode too
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


def _copy_tree(src: int, dst: int, links: dict[tuple[int, int], tuple[int, str]]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        name = entry.name
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in links:
            link_dir, link_name = links[key]
            with contextlib.suppress(OSError):
                os.link(link_name, name, src_dir_fd=link_dir, dst_dir_fd=dst, follow_symlinks=False)
                continue
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s, d = os.open(name, _DIR, dir_fd=src), os.open(name, _DIR, dir_fd=dst)
            try:
                _copy_tree(s, d, links)
                _copy_meta(s, d, "", st)
            finally:
                os.close(s)
                os.close(d)
            continue
        if stat.S_ISREG(mode):
            _copy_file(src, dst, name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, mode, st.st_rdev, dir_fd=dst)
        else:
            continue  # sockets are not copied (as docker)
        _copy_meta(src, dst, name, st)
        if st.st_nlink > 1:  # later links to it may sit in other directories: keep this one open
            links[key] = (os.dup(dst), name)


def _copy_file(src: int, dst: int, name: str) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
    try:
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst)
        try:
            while True:
                try:
                    n = os.copy_file_range(s, d, 1 << 30)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    n = os.sendfile(d, s, None, 1 << 30)
                if n == 0:
                    break
        finally:
            os.close(d)
    finally:
        os.close(s)


def _copy_meta(src: int, dst: int, name: str, st: os.stat_result) -> None:
    """Owner, mode, xattrs and times of `name` (or of the directories themselves when name is "")."""
    is_link = stat.S_ISLNK(st.st_mode)
    if name:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
    else:
        os.fchown(dst, st.st_uid, st.st_gid)
    s_path, d_path = fd_path(src, name), fd_path(dst, name)
    with contextlib.suppress(OSError):
        for attr in os.listxattr(s_path, follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.setxattr(d_path, attr, os.getxattr(s_path, attr, follow_symlinks=False), follow_symlinks=False)
    if not is_link:
        if name:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst)
        else:
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
    if name:
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
    else:
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
