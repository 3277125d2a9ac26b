"""Shifted ownership for userns-remap: container ids 0..size-1 are host ids base..base+size-1.

Trees are seen shifted through idmapped mounts of a user namespace of the shift's mapping
(`user_namespace`); where a copy is made anyway (vfs), it is chowned (`shift_tree`).
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from typing import NamedTuple

from cais.linux import idmap
from cais.storage.errors import InvalidLayer


class IdShift(NamedTuple):
    """Container ids 0..size-1 are host ids base..base+size-1."""
    uid: int
    uid_size: int
    gid: int
    gid_size: int


_namespaces: dict[IdShift, int] = {}
_namespaces_lock = threading.Lock()


def user_namespace(shift: IdShift) -> int:
    """A descriptor of a user namespace with `shift`'s mapping, made once per process: what makes
    a mount idmapped (cais.linux.fsmount.idmapped_tree)."""
    with _namespaces_lock:
        fd = _namespaces.get(shift)
        if fd is None:
            fd = _namespaces[shift] = idmap.user_namespace([(0, shift.uid, shift.uid_size)],
                                                           [(0, shift.gid, shift.gid_size)])
        return fd


def _chown(path: str, st: os.stat_result, shift: IdShift, back: bool) -> None:
    uid, gid = (st.st_uid - shift.uid, st.st_gid - shift.gid) if back else (st.st_uid, st.st_gid)
    if not (0 <= uid < shift.uid_size and 0 <= gid < shift.gid_size):
        raise InvalidLayer(f"{path}: owner {uid}:{gid} is outside the remapped range "
                           f"(0-{shift.uid_size - 1}:0-{shift.gid_size - 1})")
    caps = _capability(path) if stat.S_ISREG(st.st_mode) else None
    os.lchown(path, *((uid, gid) if back else (uid + shift.uid, gid + shift.gid)))
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))  # chown cleared them
    if caps is not None:  # chown removed it too
        os.setxattr(path, _CAP_XATTR, rooted(caps, 0 if back else shift.uid))


_CAP_XATTR = "security.capability"
_VFS_CAP_V2, _VFS_CAP_V3 = 0x02000000, 0x03000000


def _capability(path: str) -> bytes | None:
    try:
        return os.getxattr(path, _CAP_XATTR)
    except OSError:
        return None


def rooted(caps: bytes, rootid: int) -> bytes:
    """File capabilities (v2 or v3) as v3 for a user namespace whose root is `rootid` (0: v2, the
    initial namespace's): the kernel honours them only for that namespace's root."""
    magic = struct.unpack_from("<I", caps)[0]
    if magic & 0xFF000000 not in (_VFS_CAP_V2, _VFS_CAP_V3) or len(caps) < 20:
        return caps
    flags, data = magic & 0x00FFFFFF, caps[4:20]
    if rootid == 0:
        return struct.pack("<I", _VFS_CAP_V2 | flags) + data
    return struct.pack("<I", _VFS_CAP_V3 | flags) + data + struct.pack("<I", rootid)


def shift_tree(root: str, shift: IdShift, back: bool = False) -> None:
    """Move every owner under `root` (the root included) from container ids to host ids (`back`:
    from host ids to container ids). Hard-linked inodes are chowned once."""
    seen: set[int] = set()
    _chown(root, os.lstat(root), shift, back)
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            _chown(path, st, shift, back)


def unshifted(shift: IdShift, uid: int, gid: int) -> tuple[int, int]:
    """The container's view of host owner uid:gid: what a diff exported from a remapped
    container records; an id outside the range is the overflow id 65534, as the kernel shows it."""
    uid, gid = uid - shift.uid, gid - shift.gid
    return (uid if 0 <= uid < shift.uid_size else 65534), (gid if 0 <= gid < shift.gid_size else 65534)
