"""close_range(2): closing or marking close-on-exec every descriptor in a range at once."""

from __future__ import annotations

import ctypes

from cais.linux.libc import check, libc

CLOSE_RANGE_CLOEXEC = 1 << 2
_SYS_close_range = 436
_MAX_FD = 0xFFFFFFFF


def close_range(first: int, last: int = _MAX_FD, flags: int = 0) -> None:
    check(libc.syscall(_SYS_close_range, ctypes.c_ulong(first), ctypes.c_ulong(last), ctypes.c_ulong(flags)),
          "close_range")


def cloexec_from(first: int) -> None:
    """Mark every descriptor >= first close-on-exec."""
    close_range(first, _MAX_FD, CLOSE_RANGE_CLOEXEC)


def close_all_except(keep: set[int]) -> None:
    """Close every descriptor except those in `keep` (and never 0, 1, 2)."""
    start = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > start:
            close_range(start, fd - 1)
        start = fd + 1
    close_range(start)
