"""The new mount API: fsopen(2), fsconfig(2), fsmount(2), move_mount(2).

A file system is configured one option per call instead of through one string of at most a page,
so an overlay can stack as many lower layers as the kernel allows (OverlayFS's "lowerdir+",
Linux 6.8+). When configuring fails, the kernel explains why in messages read from the context fd.
"""

from __future__ import annotations

import ctypes
import errno
import os

from cais.linux.libc import check, fsencode, libc

_SYS_move_mount = 429
_SYS_fsopen = 430
_SYS_fsconfig = 431
_SYS_fsmount = 432

FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100


def kernel_messages(fs_fd: int) -> str:
    """What the kernel logged on a file system context ("e overlay: ..." lines), joined."""
    lines = []
    while True:
        try:
            data = os.read(fs_fd, 4096)
        except OSError as e:
            if e.errno == errno.ENODATA:
                break
            raise
        if not data:
            break
        lines.append(data.decode(errors="replace").strip())
    return "; ".join(lines)


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    return check(libc.syscall(_SYS_fsopen, fsencode(fstype), ctypes.c_uint(flags)), "fsopen", fstype)


def fsconfig_string(fs_fd: int, key: str, value: str) -> None:
    check(libc.syscall(_SYS_fsconfig, ctypes.c_int(fs_fd), ctypes.c_uint(FSCONFIG_SET_STRING), fsencode(key),
                       fsencode(value), ctypes.c_int(0)), f"fsconfig {key}", value)


def fsconfig_flag(fs_fd: int, key: str) -> None:
    """A boolean option (e.g. OverlayFS's "volatile")."""
    check(libc.syscall(_SYS_fsconfig, ctypes.c_int(fs_fd), ctypes.c_uint(FSCONFIG_SET_FLAG), fsencode(key), None,
                       ctypes.c_int(0)), f"fsconfig {key}")


def fsconfig_create(fs_fd: int) -> None:
    check(libc.syscall(_SYS_fsconfig, ctypes.c_int(fs_fd), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None,
                       ctypes.c_int(0)), "fsconfig create")


def fsmount(fs_fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    return check(libc.syscall(_SYS_fsmount, ctypes.c_int(fs_fd), ctypes.c_uint(flags), ctypes.c_uint(attr_flags)),
                 "fsmount")


def move_mount_to(mount_fd: int, target: str) -> None:
    """Attach the detached mount `mount_fd` at path `target`."""
    check(libc.syscall(_SYS_move_mount, ctypes.c_int(mount_fd), b"", ctypes.c_int(_AT_FDCWD), fsencode(target),
                       ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), "move_mount", target)
