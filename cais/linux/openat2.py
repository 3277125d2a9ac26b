"""openat2(2): path resolution the kernel confines to a directory (RESOLVE_IN_ROOT)."""

from __future__ import annotations

import ctypes
import os

from cais.linux.libc import check, libc

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYS_openat2 = 437


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open `path` relative to `dirfd`; with RESOLVE_IN_ROOT, `..` and absolute symlinks stop at dirfd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return check(libc.syscall(_SYS_openat2, ctypes.c_long(dirfd), os.fsencode(path), ctypes.byref(how),
                              ctypes.sizeof(how)), "openat2", path)
