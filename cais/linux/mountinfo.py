"""/proc/self/mountinfo: which paths are mount points, and their propagation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    fstype: str
    source: str
    optional: tuple[str, ...]  # "shared:N", "master:N", "propagate_from:N", "unbindable"

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def slave(self) -> bool:
        return any(o.startswith("master:") for o in self.optional)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 …)
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def entries(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    out = []
    with open(path) as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            fields, tail = left.split(" "), right.split(" ")
            if len(fields) < 6 or len(tail) < 2:
                continue
            out.append(MountEntry(int(fields[0]), int(fields[1]), _unescape(fields[3]), _unescape(fields[4]),
                                  tail[0], _unescape(tail[1]), tuple(fields[6:])))
    return out


def is_mount_point(path: str) -> bool:
    return any(e.mount_point == path for e in entries())


def mount_of(path: str) -> MountEntry:
    """The mount that `path` (an existing, resolved path) lives on: the longest mount point above it."""
    best: MountEntry | None = None
    for e in entries():
        mp = e.mount_point
        inside = path == mp or path.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mount_point)):
            best = e
    assert best is not None  # "/" is always there
    return best
