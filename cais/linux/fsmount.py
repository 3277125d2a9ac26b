"""The new mount API: fsopen(2), fsconfig(2), fsmount(2), move_mount(2), open_tree(2),
mount_setattr(2).

A file system is configured one option per call instead of through one string of at most a page,
so an overlay can stack as many lower layers as the kernel allows (OverlayFS's "lowerdir+",
Linux 6.8+). When configuring fails, the kernel explains why in messages read from the context fd.

An idmapped mount (Linux 5.12+) shows a tree's owners through a user namespace's mapping: the
detached copy `idmapped_tree` makes can be attached with `move_mount_to`, or handed to OverlayFS
as a layer by fd (`fsconfig_fd`, Linux 6.13+), without ever appearing in a mount table.
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
_SYS_open_tree = 428
_SYS_mount_setattr = 442

FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
_AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


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


def fsconfig_fd(fs_fd: int, key: str, fd: int) -> None:
    """Set `key` to an open file or mount (e.g. an overlay layer given as a detached mount)."""
    check(libc.syscall(_SYS_fsconfig, ctypes.c_int(fs_fd), ctypes.c_uint(FSCONFIG_SET_FD), fsencode(key), None,
                       ctypes.c_int(fd)), f"fsconfig {key}")


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


def move_mount_onto(mount_fd: int, target_fd: int) -> None:
    """Attach the detached mount `mount_fd` on the file or directory open as `target_fd` (an O_PATH
    fd: no path resolved again; a /proc/self/fd/N target would name the magic link itself)."""
    check(libc.syscall(_SYS_move_mount, ctypes.c_int(mount_fd), b"", ctypes.c_int(target_fd), b"",
                       ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)), "move_mount")


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, dir_fd: int = _AT_FDCWD) -> int:
    """A file descriptor for the mount at `path`; with OPEN_TREE_CLONE a detached copy of it (its
    submounts too with AT_RECURSIVE), which goes away when the last descriptor is closed. With
    `dir_fd` and AT_EMPTY_PATH (path ""), of what that fd is open on."""
    return check(libc.syscall(_SYS_open_tree, ctypes.c_int(dir_fd), fsencode(path), ctypes.c_uint(flags)),
                 "open_tree", path)


def set_idmap(mount_fd: int, userns_fd: int, recursive: bool = False) -> None:
    """Make the detached mount `mount_fd` idmapped through the mapping of user namespace `userns_fd`:
    an owner k on disk is seen, through the mount, as the id k maps to (and written back as k)."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    check(libc.syscall(_SYS_mount_setattr, ctypes.c_int(mount_fd), b"",
                       ctypes.c_uint(AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def set_readonly(mount_fd: int) -> None:
    """Make the detached mount `mount_fd` read-only (not its submounts, as a docker `:ro` bind)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    check(libc.syscall(_SYS_mount_setattr, ctypes.c_int(mount_fd), b"", ctypes.c_uint(AT_EMPTY_PATH),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def idmapped_tree(path: str, userns_fd: int, recursive: bool = False) -> int:
    """A detached idmapped copy of the tree at `path` (see set_idmap); EINVAL when its file system
    does not support idmapped mounts."""
    fd = open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0))
    try:
        set_idmap(fd, userns_fd, recursive)
    except BaseException:
        os.close(fd)
        raise
    return fd
