"""config.json: loading, validation of what the runtime relies on, and the default spec (`spec`)."""

from __future__ import annotations

import os

from cais import fastjson
from cais.runtime.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.2.0"

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def load(bundle: str) -> dict[str, Any]:
    """Read and validate BUNDLE/config.json; return it with root.path made absolute."""
    path = os.path.join(bundle, "config.json")
    try:
        config = fastjson.load(path)
    except FileNotFoundError:
        raise ConfigError(f"no config.json in bundle {bundle}") from None
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: [[[[… nested too deep
        raise ConfigError(f"cannot read {path}: {e}") from None
    validate(config)
    root = config["root"]["path"]
    config["root"]["path"] = os.path.normpath(root if os.path.isabs(root) else os.path.join(bundle, root))
    if not os.path.isdir(config["root"]["path"]):
        raise ConfigError(f"root.path {config['root']['path']} is not a directory")
    return config


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(f"config.json: {message}")


def validate(config: Any) -> None:
    """Check the shape of the fields the runtime reads, so later steps never meet a surprise."""
    _need(isinstance(config, dict), "not a JSON object")
    _need(isinstance(config.get("ociVersion"), str), "ociVersion missing")
    root = config.get("root")
    _need(isinstance(root, dict) and isinstance(root.get("path"), str) and root["path"] != "",
          "root.path missing")
    process = config.get("process")
    if process is not None:
        validate_process(process)
    mounts = config.get("mounts", [])
    _need(isinstance(mounts, list), "mounts must be a list")
    for m in mounts:
        _need(isinstance(m, dict) and isinstance(m.get("destination"), str), "each mount needs a destination")
        _need(os.path.isabs(m["destination"]), f"mount destination {m['destination']!r} is not absolute")
        _need(isinstance(m.get("options", []), list) and all(isinstance(o, str) for o in m.get("options", [])),
              f"mount {m['destination']}: options must be a list")
        _need(all(isinstance(m.get(k, ""), str) for k in ("source", "type")),
              f"mount {m['destination']}: source and type must be strings")
    _need(isinstance(config.get("hostname", ""), str), "hostname must be a string")
    linux = config.get("linux", {})
    _need(isinstance(linux, dict), "linux must be an object")
    _need(isinstance(linux.get("namespaces", []), list), "linux.namespaces must be a list")
    for key in ("resources", "seccomp"):
        _need(isinstance(linux.get(key, {}), dict), f"linux.{key} must be an object")
    _need(isinstance(linux.get("devices", []), list) and all(isinstance(d, dict) for d in linux.get("devices", [])),
          "linux.devices must be a list of objects")
    for key in ("maskedPaths", "readonlyPaths"):
        _need(isinstance(linux.get(key, []), list) and all(isinstance(p, str) for p in linux.get(key, [])),
              f"linux.{key} must be a list of paths")
    _need(isinstance(linux.get("cgroupsPath", ""), str), "linux.cgroupsPath must be a string")
    for ns in linux.get("namespaces", []):
        _need(isinstance(ns, dict) and ns.get("type") in NAMESPACE_TYPES,
              f"unknown namespace {ns.get('type') if isinstance(ns, dict) else ns!r}")
    types = [ns["type"] for ns in linux.get("namespaces", [])]
    _need(len(types) == len(set(types)), "a namespace type is listed twice")
    for key in ("uidMappings", "gidMappings"):
        _need(isinstance(linux.get(key, []), list), f"linux.{key} must be a list")
        for m in linux.get(key, []):
            _need(isinstance(m, dict) and all(isinstance(m.get(k), int) for k in ("containerID", "hostID", "size")),
                  f"{key}: each mapping needs integer containerID, hostID and size")
    if linux.get("uidMappings") or linux.get("gidMappings"):
        _need("user" in types, "uid/gid mappings need a user namespace")
    _validate_sysctls({} if linux.get("sysctl") is None else linux["sysctl"], types)
    _need(isinstance(config.get("hooks", {}), dict), "hooks must be an object")
    for name, hooks in config.get("hooks", {}).items():
        _need(name in HOOK_NAMES, f"unknown hook {name!r}")
        _need(isinstance(hooks, list), f"hooks.{name} must be a list")
        for h in hooks:
            _need(isinstance(h, dict) and isinstance(h.get("path"), str) and os.path.isabs(h["path"]),
                  f"hook {name}: path must be absolute")


# sysctls of an IPC namespace (runc's list, with fs.mqueue.*); net.* are a network namespace's
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                "kernel.shmmni", "kernel.shm_rmid_forced"}


def _validate_sysctls(sysctl: Any, types: list[str]) -> None:
    """As runc: only sysctls of a namespace the container has (not the host's: a container that
    shares the host's IPC, network or UTS namespace must not change the host's settings)."""
    _need(isinstance(sysctl, dict) and all(isinstance(v, str) for v in sysctl.values()),
          "linux.sysctl must be an object of strings")
    for key in sysctl:
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            _need("ipc" in types, f"sysctl {key!r} is not allowed in the hosts ipc namespace")
        elif key.startswith("net."):
            _need("network" in types, f"sysctl {key!r} is not allowed in the hosts network namespace")
        elif key == "kernel.hostname" and "uts" in types:
            _need(False, f"sysctl {key!r} is not allowed as it conflicts with the OCI 'hostname' field")
        else:
            _need(key == "kernel.domainname" and "uts" in types, f"sysctl {key!r} is not in a separate kernel "
                  "namespace")


def validate_process(process: Any) -> None:
    _need(isinstance(process, dict), "process must be an object")
    args = process.get("args")
    _need(isinstance(args, list) and len(args) > 0 and all(isinstance(a, str) for a in args),
          "process.args must be a non-empty list of strings")
    _need(isinstance(process.get("cwd", "/"), str) and os.path.isabs(process.get("cwd", "/")),
          "process.cwd must be an absolute path")
    _need(isinstance(process.get("env", []), list) and all(isinstance(e, str) and "=" in e
                                                           for e in process.get("env", [])),
          "process.env entries must be KEY=VALUE strings")
    caps = process.get("capabilities", {})
    _need(isinstance(caps, dict) and all(isinstance(v, list) and all(isinstance(c, str) for c in v)
                                         for v in caps.values()),
          "process.capabilities: each set must be a list of names")
    _need(isinstance(process.get("rlimits", []), list) and all(isinstance(r, dict) for r in process.get("rlimits", [])),
          "process.rlimits must be a list of objects")
    _need(all(isinstance(r.get("type"), str) and isinstance(r.get("hard"), int) and isinstance(r.get("soft"), int)
              for r in process["rlimits"]) if "rlimits" in process else True,
          "process.rlimits: each needs a type and integer hard and soft")
    _need(isinstance(process.get("oomScoreAdj", 0), int), "process.oomScoreAdj must be an integer")
    user = process.get("user", {})
    _need(isinstance(user, dict) and isinstance(user.get("uid", 0), int) and isinstance(user.get("gid", 0), int),
          "process.user needs integer uid and gid")


def default(rootless: bool = False) -> dict[str, Any]:
    """The spec `cais-runtime spec` writes: the same defaults as `runc spec`."""
    from cais.runtime import defaults  # its capability names come with ctypes: not on create's path

    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "cais",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
            + ([{"type": "user"}] if rootless else []),
            "maskedPaths": list(defaults.MASKED_PATHS),
            "readonlyPaths": list(defaults.READONLY_PATHS),
        },
    }
