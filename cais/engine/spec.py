"""The OCI runtime spec (config.json) of a container, from docker's Config and HostConfig.

Defaults are docker's: its capability set, masked and read-only /proc and /sys paths, device
cgroup rules, /dev/shm of 64 MB, and its default seccomp profile when the runtime ships one.
"""

from __future__ import annotations

import os
import stat

from cais.engine import rootpath
from cais.engine.errors import InvalidParameter

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = ["CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
            "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
            "CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
            "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # pts/*
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse stays off
]
ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack", "as"}
INIT_PATH = "/sbin/docker-init"


def normalize_caps(names: list[str] | None) -> list[str]:
    out = []
    for name in names or []:
        n = name.strip().upper()
        if n == "ALL":
            out.append("ALL")
            continue
        n = n if n.startswith("CAP_") else "CAP_" + n
        if n not in ALL_CAPS:
            raise InvalidParameter(f"unknown capability: {name!r}")
        out.append(n)
    return out


def capabilities(host: dict) -> list[str]:
    if host.get("Privileged"):
        return list(ALL_CAPS)
    add, drop = normalize_caps(host.get("CapAdd")), normalize_caps(host.get("CapDrop"))
    caps = list(ALL_CAPS) if "ALL" in add else list(DEFAULT_CAPS)
    if "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    else:
        caps += [c for c in add if c != "ALL" and c not in caps]
        caps = [c for c in caps if c not in drop]
    return caps


def resolve_user(rootfs: str, user: str) -> dict:
    """docker's --user: name|uid[:group|gid], looked up in the container's /etc/passwd and /etc/group."""
    name, _, group = (user or "").partition(":")
    passwd = [line.split(":") for line in (rootpath.read_text(rootfs, "/etc/passwd") or "").splitlines()]
    groups = [line.split(":") for line in (rootpath.read_text(rootfs, "/etc/group") or "").splitlines()]
    uid, gid, home = 0, 0, "/root"
    if name:
        entry = next((p for p in passwd if len(p) >= 6 and (p[0] == name or p[2] == name)), None)
        if entry:
            uid, gid, home = int(entry[2]), int(entry[3]), entry[5]
        elif name.isdigit():
            uid, gid, home = int(name), int(name) if not group else 0, "/"
        else:
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
    elif passwd:
        entry = next((p for p in passwd if len(p) >= 6 and p[2] == "0"), None)
        home = entry[5] if entry else "/root"
    if group:
        gentry = next((g for g in groups if len(g) >= 3 and (g[0] == group or g[2] == group)), None)
        if gentry:
            gid = int(gentry[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
    username = next((p[0] for p in passwd if len(p) >= 3 and p[2] == str(uid)), None)
    extra = sorted({int(g[2]) for g in groups if len(g) >= 4 and username and username in g[3].split(",")
                    and g[2].isdigit()} - {gid})
    return {"uid": uid, "gid": gid, "additionalGids": extra, "home": home}


def _env(image_env: list[str], env: list[str], home: str) -> list[str]:
    merged: dict[str, str] = {}
    for item in [*image_env, *env]:
        key, sep, value = item.partition("=")
        if sep:
            merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
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
          cgroups_path: str, init_path: str | None, seccomp: dict | None, mounts: list[dict]) -> dict:
    """The OCI spec of `record` whose root filesystem is mounted at `rootfs`."""
    config, host = record["Config"], record["HostConfig"]
    args = record["Path"] and [record["Path"], *record["Args"]]
    if not args:
        raise InvalidParameter("no command specified")
    user = resolve_user(rootfs, config.get("User") or "")
    if host.get("Init"):
        if not init_path:
            raise InvalidParameter("--init: no init binary found (install Debian's docker.io or catatonit)")
        args = [INIT_PATH, "--", *args]
    caps = capabilities(host)
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
    devices, rules = [], list(DEFAULT_DEVICE_RULES)
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
    linux: dict = {
        "namespaces": namespaces,
        "resources": {**resources(host), "devices": rules},
        "cgroupsPath": cgroups_path,
        "sysctl": dict(host.get("Sysctls") or {}),
        "devices": devices,
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if seccomp is not None and "seccomp=unconfined" not in (host.get("SecurityOpt") or []):
            linux["seccomp"] = seccomp
    no_new_privs = any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
                       for o in host.get("SecurityOpt") or [])
    process = {
        "terminal": bool(config.get("Tty")),
        "user": {k: user[k] for k in ("uid", "gid", "additionalGids")},
        "args": args,
        "env": _env(image_config.get("Env") or [], config.get("Env") or [], user["home"]),
        "cwd": config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": _rlimits(host),
        "noNewPrivileges": no_new_privs,
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


def exec_process(record: dict, base: dict, exec_config: dict, rootfs: str) -> dict:
    """The OCI process of `docker exec`: the container's environment and capabilities, new args."""
    config, host = record["Config"], record["HostConfig"]
    user = resolve_user(rootfs, exec_config.get("User") or config.get("User") or "")
    caps = list(ALL_CAPS) if exec_config.get("Privileged") else capabilities(host)
    return {
        "terminal": bool(exec_config.get("Tty")),
        "user": {k: user[k] for k in ("uid", "gid", "additionalGids")},
        "args": exec_config["Cmd"],
        "env": _env(base.get("env") or [], exec_config.get("Env") or [], user["home"]),
        "cwd": exec_config.get("WorkingDir") or base.get("cwd") or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": bool(base.get("noNewPrivileges")),
    }
