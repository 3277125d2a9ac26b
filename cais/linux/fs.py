"""Path resolution confined to a directory, and a thread-private working directory.

Python's os module covers the *at calls (mkdir, mknod, symlink, link, unlink, chown and utime with
`dir_fd`); what it lacks is openat2's RESOLVE_IN_ROOT (cais/linux/openat2.py), which resolves
every path component — ".." and symlinks included — as if the directory were the root, so a
hostile layer's paths cannot reach outside it (the kernel's version of docker's chrooted unpack).
"""

from __future__ import annotations

import errno
import os

from cais.linux.libc import check, libc
from cais.linux.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH | os.O_DIRECTORY) -> int:
    """Open `path` resolved inside the directory `root_fd` as if it were "/" (symlinks and ".."
    clamped). Retries the EAGAIN that a concurrent rename somewhere on the system may cause."""
    while True:
        try:
            return openat2(root_fd, path or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EINTR):
                raise


def fd_path(dir_fd: int, name: str = "") -> str:
    """A path naming `name` inside the directory open as `dir_fd`, for calls that take no dir_fd
    (lsetxattr, lgetxattr). The last component is not followed by l*xattr calls."""
    return f"/proc/self/fd/{dir_fd}/{name}" if name else f"/proc/self/fd/{dir_fd}"


CLONE_FS = 0x00000200


def unshare_fs() -> None:
    """Give the calling thread its own cwd/root/umask (unshare(CLONE_FS)), so a chdir there does not
    move the rest of the process — how a thread mounts with relative paths, as overlay2 does."""
    check(libc.unshare(CLONE_FS), "unshare(CLONE_FS)")
