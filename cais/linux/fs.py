"""openat2(2) path resolution, and the file-system flags the storage drivers need.

Python's os module covers the *at calls (mkdir, mknod, symlink, link, unlink, chown and utime with
`dir_fd`); what it lacks is openat2's RESOLVE_IN_ROOT, which resolves every path component — ".."
and symlinks included — as if the directory were the root, so a hostile layer's paths cannot
reach outside it (the kernel's version of docker's chrooted unpack).
"""

from __future__ import annotations

import ctypes
import errno
import os

from cais.linux.libc import check, fsencode, libc

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYS_openat2 = 437  # x86_64 and aarch64 alike


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


libc.syscall.restype = ctypes.c_long


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); returns the new file descriptor. Retries the EAGAIN that a concurrent rename causes."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = fsencode(path)
    while True:
        fd = libc.syscall(_SYS_openat2, ctypes.c_int(dir_fd), raw, ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how)))
        if fd == -1 and ctypes.get_errno() in (errno.EAGAIN, errno.EINTR):
            continue
        return check(fd, "openat2", path)


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH | os.O_DIRECTORY) -> int:
    """Open `path` resolved inside the directory `root_fd` as if it were "/" (symlinks and ".." clamped)."""
    return openat2(root_fd, path or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def fd_path(dir_fd: int, name: str = "") -> str:
    """A path naming `name` inside the directory open as `dir_fd`, for calls that take no dir_fd
    (lsetxattr, lgetxattr). The last component is not followed by l*xattr calls."""
    return f"/proc/self/fd/{dir_fd}/{name}" if name else f"/proc/self/fd/{dir_fd}"


CLONE_FS = 0x00000200


def unshare_fs() -> None:
    """Give the calling thread its own cwd/root/umask (unshare(CLONE_FS)), so a chdir there does not
    move the rest of the process — how a thread mounts with relative paths, as overlay2 does."""
    check(libc.unshare(CLONE_FS), "unshare(CLONE_FS)")
