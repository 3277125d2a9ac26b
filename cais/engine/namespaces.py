"""docker's namespace modes: --pid, --ipc, --uts and --cgroupns (HostConfig's PidMode, IpcMode,
UTSMode and CgroupnsMode), checked at create and turned into the OCI spec at start as dockerd does.

`host` leaves the namespace out of the spec (the runtime stays in its own: the host's);
`container:NAME` joins the other container's through its init's /proc/PID/ns/… (the runtime then
boots that container afresh rather than from its init zygote, which setns would change). The IPC
mode also decides /dev/shm: `private` a tmpfs of the container's own, `none` none, `shareable` a
tmpfs the engine mounts in the container's directory (its ShmPath) that `container:` joiners bind
too, `host` the host's /dev/shm.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from cais.engine.errors import Conflict, InvalidParameter, NotFound
from cais.linux import mount as mount_

IPC_MODES = ("", "none", "private", "host", "shareable")
SHM_DIR = "shm"


def _other(mode: str) -> str | None:
    """NAME of `container:NAME`, else None."""
    kind, sep, name = mode.partition(":")
    return name if kind == "container" and sep and name else None


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def validate(config: dict, host: dict, *, defaults: dict | None = None, remapped: bool = False) -> None:
    """At create, dockerd's checks; the IPC and cgroup namespace modes left empty get the daemon's
    defaults (`defaults` "ipc" and "cgroupns": default-ipc-mode, default-cgroupns-mode; dockerd's
    otherwise: `private`, and `host` on cgroup v1 or `private` on v2), as dockerd records them."""
    for key in ("PidMode", "IpcMode", "UTSMode", "CgroupnsMode"):
        if not isinstance(host.get(key) or "", str):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected a string")
    ipc, pid = host.get("IpcMode") or "", host.get("PidMode") or ""
    uts, cgroupns = host.get("UTSMode") or "", host.get("CgroupnsMode") or ""
    if ipc not in IPC_MODES and _other(ipc) is None:
        raise InvalidParameter(f"invalid IPC mode: {ipc}")
    if pid not in ("", "host") and (_other(pid) is None or ":" in (_other(pid) or "")):
        raise InvalidParameter(f"invalid PID mode: {pid}")
    if uts not in ("", "host"):
        raise InvalidParameter(f"invalid UTS mode: {uts}")
    if cgroupns not in ("", "host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns}")
    if uts == "host" and config.get("Hostname"):
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    if remapped and (host.get("UsernsMode") or "") != "host":
        if pid == "host":
            raise InvalidParameter("cannot share the host PID namespace when user namespaces are enabled")
        if ipc == "host":
            raise InvalidParameter("cannot share the host IPC namespace when user namespaces are enabled")
    defaults = defaults or {}
    host["IpcMode"] = ipc or defaults.get("ipc") or "private"
    host["PidMode"], host["UTSMode"] = pid, uts
    host["CgroupnsMode"] = cgroupns or defaults.get("cgroupns") or ("private" if _cgroup_v2() else "host")


def resolve(record: dict, get: Callable[[str], dict]) -> None:
    """At create, as dockerd: `container:NAME` recorded as `container:ID`; a container that does
    not exist is a bad parameter (400: a 404 would make the docker CLI pull the image)."""
    host = record["HostConfig"]
    for key in ("PidMode", "IpcMode"):
        if name := _other(host.get(key) or ""):
            try:
                other = get(name)
            except NotFound as e:
                raise InvalidParameter(str(e)) from None
            if other["Id"] == record["Id"]:  # dockerd has not registered it yet: not found
                raise InvalidParameter(f"No such container: {name}")
            host[key] = f"container:{other['Id']}"


def _running(get: Callable[[str], dict], name: str, context: str) -> dict:
    """The running container `name`; dockerd's errors (prefixed with `context`) otherwise."""
    try:
        other = get(name)
    except NotFound as e:
        raise NotFound(f"{context}{e}") from None
    if other["State"].get("Restarting"):
        raise Conflict(f"{context}container {other['Id']} is restarting, wait until the container is running")
    if not other["State"]["Running"] or not other["State"].get("Pid"):
        raise Conflict(f"{context}container {other['Id']} is not running")
    return other


def _set(namespaces: list[dict], kind: str, path: str | None) -> None:
    """Replace (or add) the namespace `kind`; path None removes it (the runtime's own: the host's)."""
    namespaces[:] = [n for n in namespaces if n["type"] != kind]
    if path is not None:
        namespaces.append({"type": kind, **({"path": path} if path else {})})


def apply(oci: dict, record: dict, get: Callable[[str], dict], container_dir: str) -> None:
    """At start: the spec's pid, ipc, uts (and hostname) namespaces and /dev/shm for the modes of
    `record` (looking other containers up with `get`); a shareable /dev/shm is mounted now and
    recorded as the container's ShmPath (`release` unmounts it)."""
    host = record["HostConfig"]
    namespaces = oci["linux"]["namespaces"]
    pid = host.get("PidMode") or ""
    if pid == "host":
        _set(namespaces, "pid", None)
    elif name := _other(pid):
        other = _running(get, name, "")
        _set(namespaces, "pid", f"/proc/{other['State']['Pid']}/ns/pid")
        if any(n["type"] == "user" for n in namespaces):  # as dockerd: a PID namespace comes with its owner
            _set(namespaces, "user", f"/proc/{other['State']['Pid']}/ns/user")
    if (host.get("UTSMode") or "") == "host":
        _set(namespaces, "uts", None)
        oci.pop("hostname", None)
    ipc = host.get("IpcMode") or "private"  # empty: a record from before the modes, which had its own
    shm_path = ""
    if ipc == "host":
        _set(namespaces, "ipc", None)
        if not os.path.isdir("/dev/shm"):
            raise InvalidParameter("/dev/shm is not mounted, but must be for --ipc=host")
        shm_path = "/dev/shm"
    elif name := _other(ipc):
        context = f"can't join IPC of container {name}"
        other = _running(get, name, context + ": ")
        shm_path = (other.get("Cais") or {}).get("ShmPath") or ""
        if not shm_path or not os.path.isdir(shm_path):
            raise Conflict(f"{context}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
        _set(namespaces, "ipc", f"/proc/{other['State']['Pid']}/ns/ipc")
    mounts = oci["mounts"]
    default = next((m for m in mounts if m["destination"] == "/dev/shm" and m.get("source") == "shm"), None)
    if default is None:  # the user mounted something at /dev/shm: it stays, and is not shared
        shm_path = ""
    elif ipc == "none":
        mounts.remove(default)
    elif ipc == "shareable":
        shm_path = os.path.join(container_dir, SHM_DIR)
        os.makedirs(shm_path, mode=0o700, exist_ok=True)
        if not os.path.ismount(shm_path):
            mount_.mount("shm", shm_path, "tmpfs", mount_.MS_NOSUID | mount_.MS_NODEV | mount_.MS_NOEXEC,
                         f"mode=1777,size={int(host.get('ShmSize') or 64 * 1024 * 1024)}")
    if default is not None and shm_path:
        mounts[mounts.index(default)] = {"destination": "/dev/shm", "type": "bind", "source": shm_path,
                                         "options": ["rbind", "rprivate"]}
    record.setdefault("Cais", {})["ShmPath"] = shm_path


def release(record: dict, container_dir: str) -> None:
    """After the exit: the container's own shareable /dev/shm unmounted (joiners keep their copy
    of the mount until they exit too)."""
    path = os.path.join(container_dir, SHM_DIR)
    if (record.get("Cais") or {}).get("ShmPath") == path:
        record["Cais"]["ShmPath"] = ""
    with contextlib.suppress(OSError):
        if os.path.ismount(path):
            mount_.umount(path, mount_.MNT_DETACH)
