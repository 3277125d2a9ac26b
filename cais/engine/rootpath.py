"""Resolve paths inside a container's root filesystem without ever leaving it (like securejoin).

Symlinks are followed as if `root` were `/`: an absolute link target or a `..` cannot climb out.
Used for /etc/passwd lookups, docker cp (archive get/put) and anything else that reads or writes
in a root filesystem an image author controls.
"""

from __future__ import annotations

import os

from cais.engine.errors import InvalidParameter

MAX_LINKS = 40


def resolve(root: str, path: str) -> str:
    """The host path of `path` inside `root`, with every symlink resolved within `root`.

    `root` itself is not resolved, so /proc/PID/root (a running container's view) works too.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > MAX_LINKS:
                raise InvalidParameter(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def read_text(root: str, path: str) -> str | None:
    try:
        with open(resolve(root, path), encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return None
