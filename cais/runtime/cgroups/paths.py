"""Where a container's cgroup lives: cgroupsPath interpreted exactly as runc does.

* cgroupfs driver (the default): the path is cleaned so that it can never climb out of the
  hierarchy (``../../x`` becomes ``x``). An absolute path is taken from the root of each
  hierarchy. A relative one is taken from the cgroup of the calling process: on v1 from its own
  cgroup in each hierarchy, on v2 from the *parent* of its own cgroup (its own one already has
  processes, so it could not delegate controllers to a child). An empty path means the container
  id, relative.
* ``--systemd-cgroup``: the path is ``slice:prefix:name`` (``system.slice:docker:1234``) and maps
  to ``/system.slice/docker-1234.scope``; slices nest by their dashes (``a-b.slice`` lives in
  ``a.slice/a-b.slice``). An empty path means ``system.slice:runc:<id>``. cais has no systemd
  dependency: the unit is created as a plain directory at the path systemd would use.
"""

from __future__ import annotations

import os
import posixpath

from cais.runtime.cgroups.errors import CgroupError

CGROUP_ROOT = "/sys/fs/cgroup"


def clean_path(path: str) -> str:
    """runc's utils.CleanPath: lexical cleaning where a relative path cannot climb above itself."""
    if not path:
        return ""
    path = posixpath.normpath(path)
    if not path.startswith("/"):
        path = posixpath.relpath(posixpath.normpath("/" + path), "/")
    return posixpath.normpath(path)


def expand_slice(slice_name: str) -> str:
    """systemd's slice naming: ``a-b-c.slice`` -> ``/a.slice/a-b.slice/a-b-c.slice``."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or len(slice_name) <= len(suffix) or "/" in slice_name:
        raise CgroupError(f"invalid systemd slice name {slice_name!r}")
    stem = slice_name[: -len(suffix)]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for component in stem.split("-"):
        if not component:
            raise CgroupError(f"invalid systemd slice name {slice_name!r}")
        path += "/" + prefix + component + suffix
        prefix += component + "-"
    return path


def systemd_path(cgroups_path: str | None, container_id: str) -> str:
    """``slice:prefix:name`` -> the cgroupfs path systemd would give that unit (always absolute)."""
    if not cgroups_path:
        parent, prefix, name = "system.slice", "runc", container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise CgroupError(
                f'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, got {cgroups_path!r}'
            )
        parent, prefix, name = parts
    if not name or "/" in name or "/" in prefix:
        raise CgroupError(f"invalid systemd cgroupsPath {cgroups_path!r}")
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return posixpath.join(expand_slice(parent or "system.slice"), unit)


def inner_path(cgroups_path: str | None, container_id: str, systemd: bool = False) -> str:
    """The cgroup path relative to a hierarchy: absolute ("/a/b") or relative to the caller ("a/b")."""
    if systemd:
        path = systemd_path(cgroups_path, container_id)
    else:
        path = clean_path(cgroups_path or "") or clean_path(container_id)
    if path in ("", ".", "/"):
        raise CgroupError(f"cgroupsPath {cgroups_path!r} would be the root of the hierarchy")
    return path


class Mount:
    """A cgroup hierarchy's mount. root: the path inside the hierarchy that is mounted there;
    fstype: "cgroup" or "cgroup2"; subsystems: v1 ("cpu", "cpuacct") or ("name=systemd",), v2 ().
    (Not a dataclass nor a namedtuple: dataclasses, collections cost ~10 / ~3 ms of each start.)"""

    __slots__ = ("mountpoint", "root", "fstype", "subsystems")

    def __init__(self, mountpoint: str, root: str, fstype: str, subsystems: tuple[str, ...]) -> None:
        self.mountpoint, self.root, self.fstype, self.subsystems = mountpoint, root, fstype, subsystems


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    mounts = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            subsystems: tuple[str, ...] = ()
            if fstype == "cgroup":
                known = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode"}
                subsystems = tuple(
                    o
                    for o in fields[sep + 3].split(",")
                    if o not in known and not o.startswith("release_agent=")
                )
            mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), fstype, subsystems))
    # A hierarchy mounted twice is used where the system mounts it.
    return sorted(
        mounts, key=lambda m: not m.mountpoint.startswith(CGROUP_ROOT + "/") and m.mountpoint != CGROUP_ROOT
    )


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """``/proc/PID/cgroup``: each v1 subsystem (and "" for v2) -> the path in its hierarchy."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                out[""] = path
            for c in controllers.split(","):
                if c:
                    out[c] = path
    return out


def under_mount(mount: Mount, cgroup: str) -> str:
    """The directory of hierarchy path ``cgroup`` below ``mount``."""
    rel = posixpath.relpath(cgroup, mount.root) if mount.root != "/" else cgroup.lstrip("/")
    if rel.startswith(".."):
        # Our cgroup is outside of what is mounted (a cgroup namespace or a bind mount).
        raise CgroupError(f"cgroup {cgroup} is not visible under {mount.mountpoint}")
    return os.path.normpath(os.path.join(mount.mountpoint, rel))
