"""setfsuid(2)/setfsgid(2): the ids the calling thread acts as on file systems.

What root creates through an idmapped mount must have an owner the mount's mapping can express:
host root is outside a remapped container's range, so the kernel refuses (EOVERFLOW). Acting as
the remapped root, with the capabilities the change of fsuid takes away raised again, root can
then create there and give files any owner the mapping holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cais.linux.capabilities import capget, capset
from cais.linux.libc import libc


@contextlib.contextmanager
def acting_as(uid: int, gid: int) -> Iterator[None]:
    """This thread's file system uid and gid are `uid`, `gid` for the block; its capabilities stay."""
    caps = capget()
    old_gid = libc.setfsgid(gid)
    old_uid = libc.setfsuid(uid)
    try:
        if libc.setfsuid(-1) != uid or libc.setfsgid(-1) != gid:  # setfs*id report no errors but this way
            raise PermissionError(f"cannot act as {uid}:{gid} on file systems")
        capset(*caps)  # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER... left the effective set with fsuid 0
        yield
    finally:
        libc.setfsuid(old_uid)
        libc.setfsgid(old_gid)
        capset(*caps)
