"""A container's user, looked up in its own /etc/passwd and /etc/group as runc's libcontainer/user
does: what `run --user`, `exec --user`, a build's `USER` for RUN and `cp -a` all resolve.

`user` is docker's `name|uid[:group|gid]`. The groups are dockerd's: the primary one, every group
listing the user (unless a group was given), and `group_add` (--group-add: names or gids).
A uid or gid missing from the files is taken as is; a name that is missing is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class UserNotFound(ValueError):
    """A user or group name the container's files do not have; str() is docker's message."""


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: list[int]  # sorted, the primary gid included
    home: str


def _entries(text: str | None, numeric: tuple[int, ...]) -> list[list[str]]:
    """The lines of a passwd or group file whose fields at `numeric` are numbers (others are skipped)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split(":")
        if not line.startswith("#") and len(parts) > max(numeric) and all(parts[i].isdigit() for i in numeric):
            out.append(parts)
    return out


def lookup(read: Callable[[str], str | None], user: str, group_add: list[str] | None = None) -> ExecUser:
    """`read(path)`: a text file of the root file system, None if missing."""
    name, _, group = (user or "").partition(":")
    passwd = [p for p in _entries(read("/etc/passwd"), (2, 3)) if len(p) >= 6]
    groups = _entries(read("/etc/group"), (2,))
    uid, gid, home = 0, 0, "/root"
    entry = next((p for p in passwd if (int(p[2]) == int(name) if name.isdigit() else p[0] == name)), None) \
        if name else next((p for p in passwd if p[2] == "0"), None)
    if entry:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5]
    elif name.isdigit():
        uid, home = int(name), "/"
    elif name:
        raise UserNotFound(f"unable to find user {name}: no matching entries in passwd file")
    member_of = []
    if group:
        gentry = next((g for g in groups if (int(g[2]) == int(group) if group.isdigit() else g[0] == group)), None)
        if gentry:
            gid = int(gentry[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise UserNotFound(f"unable to find group {group}: no matching entries in group file")
    elif entry:
        member_of = [int(g[2]) for g in groups if len(g) >= 4 and entry[0] in g[3].split(",")]
    added = []
    for item in group_add or []:
        gentry = next((g for g in groups if item in (g[0], g[2])), None)
        if gentry:
            added.append(int(gentry[2]))
        elif item.isdigit():
            added.append(int(item))
        else:
            raise UserNotFound(f"Unable to find group {item}: no matching entries in group file")
    return ExecUser(uid, gid, sorted({gid, *member_of, *added}), home)
