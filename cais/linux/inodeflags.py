"""Inode flags (`chattr`/`lsattr`: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS), for the one cais uses.

FS_TOPDIR_FL ("T") marks a directory whose subdirectories are unrelated, like /home: ext2/3/4
then place each new subdirectory in a block group of its own choosing (the Orlov allocator), not
in its parent's. A container's directory so lands away from where other processes on the disk
create and delete files — which matters on ext4 without a journal, where every new inode scans
past the inodes its group freed in the last minutes (ialloc.c's `recently_deleted`).
"""

from __future__ import annotations

import array
import fcntl
import os

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long); the kernel reads and writes an int
FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000


def mark_top_dir(path: str) -> bool:
    """Set FS_TOPDIR_FL on directory `path`; False where the file system has no such flag."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:  # ENOTTY, EOPNOTSUPP (tmpfs, xfs, overlay…): a hint the file system does not take
        return False
    finally:
        os.close(fd)
