"""personality(2): the execution domain (LINUX, or LINUX32 for `linux32`-style 32-bit uname)."""

from __future__ import annotations

import ctypes

from cais.linux.libc import check, libc

PER_LINUX = 0x0000
PER_LINUX32 = 0x0008

libc.personality.argtypes = [ctypes.c_ulong]


def personality(persona: int) -> int:
    return check(libc.personality(persona), "personality")
