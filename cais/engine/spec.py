"""The OCI runtime spec (config.json) of a container, from docker's Config and HostConfig.

Defaults are docker's (`cais.runtime.defaults`): its capability set, masked and read-only /proc
and /sys paths, device cgroup rules, /dev/shm of 64 MB and its default seccomp profile resolved
for the container's capabilities; `cais.engine.security` reads the options that change them.
"""

from __future__ import annotations

import os
import stat

from cais.engine import security
from cais.engine.errors import InvalidParameter
from cais.engine.userns import IdMap
from cais.runtime import defaults
from cais.storage import userdb
from cais.storage.rootdir import read_text

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack", "as"}
INIT_PATH = "/sbin/docker-init"


def resolve_user(rootfs: str, user: str, group_add: list[str] | None = None) -> dict:
    """docker's --user, looked up in the container's /etc/passwd and /etc/group (cais.storage.userdb)."""
    try:
        found = userdb.lookup(lambda path: read_text(rootfs, path), user, group_add)
    except userdb.UserNotFound as e:
        raise InvalidParameter(str(e)) from None
    return {"uid": found.uid, "gid": found.gid, "additionalGids": found.groups, "home": found.home}


def _env(image_env: list[str], env: list[str], home: str, *, hostname: str = "", tty: bool = False,
         link_env: list[str] | None = None) -> list[str]:
    """dockerd's order: PATH, HOSTNAME, TERM (with a TTY), the --link variables, then the image's
    and the caller's variables replacing or adding; HOME from the user's passwd entry unless set."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    if hostname:
        merged["HOSTNAME"] = hostname
    if tty:
        merged["TERM"] = "xterm"
    for item in [*(link_env or []), *image_env, *env]:
        key, sep, value = item.partition("=")
        if sep:
            merged[key] = value
    merged.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in merged.items()]


def resources(host: dict) -> dict:
    """linux.resources from HostConfig's resource fields (also used by `update`)."""
    res: dict = {}
    memory: dict = {}
    if host.get("Memory"):
        memory["limit"] = int(host["Memory"])
        swap = int(host.get("MemorySwap") or 0)
        if swap > 0:
            memory["swap"] = swap
        elif swap == 0:
            memory["swap"] = int(host["Memory"]) * 2
    if host.get("MemoryReservation"):
        memory["reservation"] = int(host["MemoryReservation"])
    if host.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if host.get("MemorySwappiness") not in (None, -1):
        memory["swappiness"] = int(host["MemorySwappiness"])
    if memory:
        res["memory"] = memory
    cpu: dict = {}
    if host.get("NanoCpus"):
        if host.get("CpuQuota") or host.get("CpuPeriod"):
            raise InvalidParameter("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
        cpu["period"] = 100000
        cpu["quota"] = int(host["NanoCpus"]) * 100000 // 1_000_000_000
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if host.get("CpuQuota"):
        cpu["quota"] = int(host["CpuQuota"])
    if host.get("CpuPeriod"):
        cpu["period"] = int(host["CpuPeriod"])
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if host.get("CpusetMems"):
        cpu["mems"] = host["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit") and int(host["PidsLimit"]) > 0:
        res["pids"] = {"limit": int(host["PidsLimit"])}
    if host.get("BlkioWeight"):
        res["blockIO"] = {"weight": int(host["BlkioWeight"])}
    return res


def validate_resources(host: dict) -> None:
    for key in ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
                "PidsLimit", "BlkioWeight", "ShmSize"):
        value = host.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected an integer")
    if host.get("Memory") and int(host["Memory"]) < 6 * 1024 * 1024:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = int(host.get("MemorySwap") or 0)
    if swap > 0 and swap < int(host.get("Memory") or 0):
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if host.get("NanoCpus") and int(host["NanoCpus"]) > os.cpu_count() * 1_000_000_000:  # type: ignore[operator]
        raise InvalidParameter(f"range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only "
                               f"{os.cpu_count()} CPUs available")


def _rlimits(host: dict) -> list[dict]:
    out = []
    for u in host.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        if name not in ULIMITS:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        out.append({"type": "RLIMIT_" + name.upper(), "hard": int(u.get("Hard", 0)), "soft": int(u.get("Soft", 0))})
    return out


def _device(spec: dict) -> tuple[dict, dict]:
    host_path = spec.get("PathOnHost", "")
    path = spec.get("PathInContainer") or host_path
    access = spec.get("CgroupPermissions") or "rwm"
    try:
        st = os.stat(host_path)
    except OSError:
        raise InvalidParameter(f"error gathering device information while adding custom device "
                               f"{host_path!r}: no such file or directory") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidParameter(f"{host_path} is not a device")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": stat.S_IMODE(st.st_mode),
              "uid": st.st_uid, "gid": st.st_gid}
    return device, {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}


def _host_devices() -> list[dict]:
    """Every device node of the host's /dev (for --privileged)."""
    out = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if d not in ("pts", "shm", "mqueue", "fd")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and name not in ("console", "ptmx", "tty"):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def build(record: dict, image_config: dict, rootfs: str, container_dir: str, *,
          cgroups_path: str, init_path: str | None, mounts: list[dict], remap: IdMap | None = None,
          link_env: list[str] | None = None) -> dict:
    """The OCI spec of `record` whose root filesystem is mounted at `rootfs`; with `remap` (the
    mapping its rootfs was made for, userns-remap) in a user namespace of that mapping;
    `link_env`: the variables of its --link containers."""
    config, host = record["Config"], record["HostConfig"]
    args = record["Path"] and [record["Path"], *record["Args"]]
    if not args:
        raise InvalidParameter("no command specified")
    user = resolve_user(rootfs, config.get("User") or "", host.get("GroupAdd"))
    if host.get("Init"):
        if not init_path:
            raise InvalidParameter("--init: no init binary found (install Debian's docker.io or catatonit)")
        args = [INIT_PATH, "--", *args]
    caps = security.capabilities(host)
    options = security.security_options(host)
    privileged = bool(host.get("Privileged"))
    shm_size = int(host.get("ShmSize") or 64 * 1024 * 1024)
    spec_mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if not privileged else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro" if not privileged else "rw", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]
    extra: list[dict] = []  # the engine's and the user's mounts, sorted by depth as docker does
    for name in ("resolv.conf", "hostname", "hosts"):
        extra.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(container_dir, name),
                      "options": ["rbind", "rprivate"]})
    if host.get("Init") and init_path:
        extra.append({"destination": INIT_PATH, "type": "bind", "source": init_path,
                      "options": ["bind", "ro", "nosuid", "nodev"]})
    for path, opts in (host.get("Tmpfs") or {}).items():
        extra.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "nodev", "noexec", *[o for o in opts.split(",") if o]]})
    by_dest = {m["destination"]: m for m in [*extra, *mounts]}  # a user's mount replaces the engine's
    extra = sorted(by_dest.values(), key=lambda m: m["destination"].rstrip("/").count("/"))
    spec_mounts = [m for m in spec_mounts if m["destination"] not in by_dest] + extra
    devices, rules = [], [dict(r) for r in defaults.DEVICE_RULES] + security.device_cgroup_rules(host)
    if privileged:
        devices = _host_devices()
        rules = [{"allow": True, "access": "rwm"}]
    for d in host.get("Devices") or []:
        device, rule = _device(d)
        devices.append(device)
        rules.append(rule)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if (host.get("NetworkMode") or "none") != "host":
        namespaces.append({"type": "network"})
    if host.get("CgroupnsMode") == "private":
        namespaces.append({"type": "cgroup"})
    if remap is not None:
        namespaces.append({"type": "user"})
    linux: dict = {
        "namespaces": namespaces,
        "resources": {**resources(host), "devices": rules},
        "cgroupsPath": cgroups_path,
        "sysctl": dict(host.get("Sysctls") or {}),
        "devices": devices,
        **(remap.oci() if remap else {}),
    }
    if not privileged and not options.systempaths_unconfined:
        linux["maskedPaths"] = list(defaults.MASKED_PATHS)
        linux["readonlyPaths"] = list(defaults.READONLY_PATHS)
    profile = security.seccomp(host, caps)
    if profile is not None:
        linux["seccomp"] = profile
    process = {
        "terminal": bool(config.get("Tty")),
        "user": {k: user[k] for k in ("uid", "gid", "additionalGids")},
        "args": args,
        "env": _env(image_config.get("Env") or [], config.get("Env") or [], user["home"],
                    hostname=config.get("Hostname") or record["Id"][:12], tty=bool(config.get("Tty")),
                    link_env=link_env),
        "cwd": config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        "capabilities": _capability_sets(caps, user["uid"]),
        "rlimits": _rlimits(host),
        "noNewPrivileges": options.no_new_privileges,
    }
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(host["OomScoreAdj"])
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": config.get("Hostname") or record["Id"][:12],
        "mounts": spec_mounts,
        "linux": linux,
    }


def _capability_sets(caps: list[str], uid: int) -> dict[str, list[str]]:
    """dockerd's: a user other than root gets the bounding set only, as execve would leave it."""
    if uid == 0:
        return {k: caps for k in ("bounding", "effective", "permitted")}
    return {"bounding": caps}


def exec_process(record: dict, base: dict, exec_config: dict, rootfs: str) -> dict:
    """The OCI process of `docker exec`: the container's environment and capabilities, new args."""
    config, host = record["Config"], record["HostConfig"]
    user = resolve_user(rootfs, exec_config.get("User") or config.get("User") or "", host.get("GroupAdd"))
    caps = {k: list(defaults.ALL_CAPS) for k in ("bounding", "effective", "permitted")} \
        if exec_config.get("Privileged") else base.get("capabilities") or _capability_sets(
            security.capabilities(host), user["uid"])
    return {
        "terminal": bool(exec_config.get("Tty")),
        "user": {k: user[k] for k in ("uid", "gid", "additionalGids")},
        "args": exec_config["Cmd"],
        "env": _env(base.get("env") or [], exec_config.get("Env") or [], user["home"],
                    tty=bool(exec_config.get("Tty"))),
        "cwd": exec_config.get("WorkingDir") or base.get("cwd") or "/",
        "capabilities": caps,  # the container's, as dockerd (whatever the exec's user)
        "noNewPrivileges": bool(base.get("noNewPrivileges")),
    }
