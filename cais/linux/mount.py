"""mount(2), umount2(2), pivot_root(2) and their flags."""

from __future__ import annotations

import ctypes

from cais.linux.libc import check, fsencode, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(
    source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None
) -> None:
    check(
        libc.mount(fsencode(source), fsencode(target), fsencode(fstype), flags, fsencode(data)),
        "mount",
        target,
    )


def umount(target: str, flags: int = 0) -> None:
    check(libc.umount2(fsencode(target), flags), "umount", target)


_SYS_pivot_root = 155  # x86_64


def pivot_root(new_root: str, put_old: str) -> None:
    check(libc.syscall(_SYS_pivot_root, fsencode(new_root), fsencode(put_old)), "pivot_root", new_root)
