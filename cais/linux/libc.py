"""Loading libc and turning its -1/errno convention into OSError."""

from __future__ import annotations

import ctypes
import os


def _load() -> ctypes.CDLL:
    # "libc.so.6" first: find_library() runs ldconfig/gcc in a subprocess (~100 ms at every start).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c"), use_errno=True)


libc = _load()
libc.syscall.restype = ctypes.c_long  # syscall(2) returns a long: pids, descriptors, -1


def check(result: int, what: str, path: str | None = None) -> int:
    """Raise OSError (with errno and an optional path) when a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {os.strerror(err)}", path)
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def fsencode(path: str | bytes | None) -> bytes | None:
    return None if path is None else os.fsencode(path)
