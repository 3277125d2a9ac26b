"""userns-remap: the daemon-wide uid/gid mapping of containers' user namespaces (as dockerd's).

`default` uses (and creates if missing) the system user and group `cais-remap` and gives them a
65536-id range in /etc/subuid and /etc/subgid when they have none; `USER[:GROUP]` (names or ids)
uses the ranges those already have. Container root is then the first subordinate id on the host.
"""

from __future__ import annotations

import grp
import pwd
import subprocess

from cais.engine.errors import EngineError
from cais.storage.idshift import IdShift

DEFAULT_USER = "cais-remap"
RANGE_SIZE = 65536


class RemapError(EngineError):
    pass


class IdMap(IdShift):
    """Container ids 0..size-1 are host ids uid..uid+uid_size-1 (gids alike): the storage's id
    shift, and the containers' OCI id mappings."""
    __slots__ = ()

    def oci(self) -> dict:
        return {"uidMappings": [{"containerID": 0, "hostID": self.uid, "size": self.uid_size}],
                "gidMappings": [{"containerID": 0, "hostID": self.gid, "size": self.gid_size}]}


def _first_range(path: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
            return int(parts[1]), int(parts[2])
    return None


def _free_start(paths: tuple[str, ...]) -> int:
    """The first id after every range of both files, at least 100000 (shadow's SUB_UID_MIN)."""
    end = 100000
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        end = max(end, int(parts[1]) + int(parts[2]))
        except FileNotFoundError:
            continue
    return end


def _ensure_default_user(subuid: str, subgid: str) -> None:
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            DEFAULT_USER], capture_output=True, text=True)
        if r.returncode != 0:
            raise RemapError(f"userns-remap: cannot create the user {DEFAULT_USER}: "
                             f"{r.stderr.strip() or r.returncode}") from None
    start = _free_start((subuid, subgid))
    for path in (subuid, subgid):
        if _first_range(path, (DEFAULT_USER,)) is None:
            with open(path, "a") as f:
                f.write(f"{DEFAULT_USER}:{start}:{RANGE_SIZE}\n")


def _user(spec: str) -> tuple[str, ...]:
    """The names a subuid file may list the user under: its name and its uid."""
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except KeyError:
        raise RemapError(f"userns-remap: no such user: {spec}") from None
    return entry.pw_name, str(entry.pw_uid)


def _group(spec: str) -> tuple[str, ...]:
    try:
        entry = grp.getgrgid(int(spec)) if spec.isdigit() else grp.getgrnam(spec)
    except KeyError:
        raise RemapError(f"userns-remap: no such group: {spec}") from None
    return entry.gr_name, str(entry.gr_gid)


def resolve(value: str, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMap:
    """The mapping `value` (a userns-remap setting) stands for."""
    if not isinstance(value, str) or not value or value.count(":") > 1:
        raise RemapError(f"userns-remap: invalid value {value!r}: expected 'default' or USER[:GROUP]")
    if value == "default":
        _ensure_default_user(subuid, subgid)
        value = DEFAULT_USER
    user_spec, _, group_spec = value.partition(":")
    users = _user(user_spec)
    groups = _group(group_spec) if group_spec else users  # as dockerd: USER alone names both ranges
    uids = _first_range(subuid, users)
    if uids is None:
        raise RemapError(f"userns-remap: no subordinate uid range for user {users[0]} in {subuid}")
    gids = _first_range(subgid, groups)
    if gids is None:
        kind = "group" if group_spec else "user"
        raise RemapError(f"userns-remap: no subordinate gid range for {kind} {groups[0]} in {subgid}")
    return IdMap(uids[0], uids[1], gids[0], gids[1])


def from_config(path: str) -> IdMap | None:
    """The mapping daemon.json at `path` sets (its "userns-remap"), None without one or without the
    file: what the daemonless CLI runs its containers with, as caisd would."""
    import json
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RemapError(f"cannot read {path}: {e}") from None
    value = config.get("userns-remap") if isinstance(config, dict) else None
    return resolve(value) if value else None
