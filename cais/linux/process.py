"""Process attributes set with prctl(2)."""

from __future__ import annotations

import ctypes

from cais.linux.libc import check, libc

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15


def set_child_subreaper(on: bool = True) -> None:
    """Orphaned descendants get reparented to this process instead of init (so it can reap them)."""
    check(libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1 if on else 0), 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_name(name: str) -> None:
    """The name shown by ps -o comm (15 bytes at most)."""
    check(libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0), "prctl(PR_SET_NAME)")
