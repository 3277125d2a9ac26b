"""Loading libc and turning its -1/errno convention into OSError."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


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
