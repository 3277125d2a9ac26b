"""OCI whiteouts and their OverlayFS form.

In an OCI layer a deleted NAME is an empty file `.wh.NAME` and a directory whose lower contents are
hidden holds `.wh..wh..opq`. OverlayFS spells the same things as a character device 0/0 named NAME
and the xattr `trusted.overlay.opaque=y` on the directory. The overlay driver converts both ways;
vfs applies whiteouts as deletions.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from enum import Enum

from cais.storage.errors import InvalidLayer

PREFIX = ".wh."
META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."


class Kind(Enum):
    WHITEOUT = "whiteout"  # delete the named sibling
    OPAQUE = "opaque"      # hide the directory's lower contents
    META = "meta"          # other .wh..wh. entries (aufs bookkeeping): ignored, as docker does


def classify(basename: str) -> tuple[Kind, str] | None:
    """(kind, target name) if `basename` is a whiteout entry, else None. Refuses '.', '..' and ''."""
    if not basename.startswith(PREFIX):
        return None
    if basename == OPAQUE:
        return Kind.OPAQUE, ""
    if basename.startswith(META_PREFIX):
        return Kind.META, ""
    target = basename[len(PREFIX):]
    if target in ("", ".", ".."):
        raise InvalidLayer(f"invalid whiteout {basename!r}: it names {target or 'nothing'!r}")
    return Kind.WHITEOUT, target


def make_overlay_whiteout(dir_fd: int, name: str) -> None:
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def set_overlay_opaque(fd: int) -> None:
    """Mark the directory open as `fd` (a real, not O_PATH, descriptor) opaque."""
    os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")


def is_overlay_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def find_in_layers(layers: Sequence[str], rel: str) -> str | None:
    """Where `rel` is visible through a stack of overlay layer directories (top first): the path of
    the entry in the topmost layer that has it, or None if absent, whited out, under an opaque
    directory, or under a non-directory. Never follows a symlink (each component is lstat'ed)."""
    parts = rel.split("/")
    for layer in layers:
        cur = layer
        opaque_above = False
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if is_overlay_whiteout(st):
                return None
            if i == len(parts) - 1:
                return cur
            if not stat.S_ISDIR(st.st_mode):
                return None
            if is_overlay_opaque(cur):
                opaque_above = True
        if opaque_above:
            return None
    return None


def list_in_layers(layers: Sequence[str], rel: str) -> set[str]:
    """The names directory `rel` shows through a stack of overlay layer directories (top first)."""
    parts = rel.split("/") if rel else []
    seen: set[str] = set()
    visible: set[str] = set()
    for layer in layers:
        cur = layer
        present = True
        opaque_here = False
        for part in parts:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                present = False
                break
            if is_overlay_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                return visible  # hides the directory in every layer below
            opaque_here = opaque_here or is_overlay_opaque(cur)
        if present:
            for name in os.listdir(cur):
                if name not in seen:
                    seen.add(name)
                    if not is_overlay_whiteout(os.lstat(os.path.join(cur, name))):
                        visible.add(name)
        if opaque_here:
            break
    return visible
