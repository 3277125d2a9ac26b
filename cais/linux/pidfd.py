"""pidfd_open(2) and pidfd_send_signal(2): signals that cannot hit a recycled pid."""

from __future__ import annotations

import ctypes

from cais.linux.libc import check, libc

_SYS_pidfd_send_signal = 424
_SYS_pidfd_open = 434


def pidfd_open(pid: int) -> int:
    return check(libc.syscall(_SYS_pidfd_open, ctypes.c_long(pid), ctypes.c_long(0)), "pidfd_open")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    check(libc.syscall(_SYS_pidfd_send_signal, ctypes.c_long(pidfd), ctypes.c_long(sig), None, ctypes.c_long(0)), "pidfd_send_signal")
