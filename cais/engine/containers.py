"""Container records as docker shows them: creating one from an API body, inspect and list shapes."""

from __future__ import annotations

import shlex
import time

from cais.engine import humanize, logs, names, namespaces, security, spec
from cais.engine.errors import InvalidParameter
from cais.engine.restart import parse_policy
from cais.network import ports

ZERO_TIME = "0001-01-01T00:00:00Z"
_LIST_FILTERS = {"id", "name", "label", "status", "exited", "ancestor", "before", "since", "health",
                 "volume", "network", "is-task", "expose", "publish"}
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _list_of_str(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"invalid {what}: expected a list of strings")
    return value


def _merge_env(image_env: list[str], env: list[str]) -> list[str]:
    """dockerd's ReplaceOrAppendEnvValues: the container's KEY=VALUE replaces the image's in place,
    new keys are appended, and a bare KEY unsets it."""
    merged: dict[str, str] = {}
    for item in [*image_env, *env]:
        merged[item.partition("=")[0]] = item
    return [item for item in merged.values() if "=" in item]


def new_record(body: dict, name: str | None, image: dict, taken: set[str], *, remapped: bool = False,
               namespace_defaults: dict | None = None) -> dict:
    """A container record from POST /containers/create's body and the image's config (`remapped`:
    the daemon runs containers in user namespaces, userns-remap; `namespace_defaults`: the
    daemon's default ipc and cgroupns modes)."""
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidParameter("invalid HostConfig: expected an object")
    for key in ("Env", "Cmd", "Entrypoint"):
        config[key] = _list_of_str(config.get(key), key)
    if config.get("Labels") is not None and not isinstance(config["Labels"], dict):
        raise InvalidParameter("invalid Labels: expected an object")
    if name is not None and not names.NAME.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    image_config = image.get("Config") or {}
    entrypoint = config["Entrypoint"] if config.get("Entrypoint") is not None else image_config.get("Entrypoint")
    cmd = config.get("Cmd")
    if cmd is None and config.get("Entrypoint") is None:
        cmd = image_config.get("Cmd")
    if entrypoint == [""]:
        entrypoint = None
    argv = [*(entrypoint or []), *(cmd or [])]
    if not argv:
        raise InvalidParameter("no command specified")
    spec.validate_resources(host)
    security.validate(host)
    namespaces.validate(config, host, remapped=remapped, defaults=namespace_defaults)
    policy = parse_policy(host.get("RestartPolicy"))
    if host.get("AutoRemove") and policy["Name"] not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    logs.log_settings(host.get("LogConfig"))
    cid = names.new_id()
    merged_labels = {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})}
    full_config = {
        "Hostname": config.get("Hostname") or cid[:12], "Domainname": config.get("Domainname", ""),
        "User": config.get("User") if config.get("User") is not None else image_config.get("User", ""),
        "AttachStdin": bool(config.get("AttachStdin")), "AttachStdout": bool(config.get("AttachStdout")),
        "AttachStderr": bool(config.get("AttachStderr")), "Tty": bool(config.get("Tty")),
        "OpenStdin": bool(config.get("OpenStdin")), "StdinOnce": bool(config.get("StdinOnce")),
        "Env": _merge_env(image_config.get("Env") or [], config.get("Env") or []) or None,
        "Cmd": cmd, "Image": config.get("Image"), "Volumes": config.get("Volumes") or image_config.get("Volumes"),
        "WorkingDir": config.get("WorkingDir") or image_config.get("WorkingDir", ""),
        "Entrypoint": entrypoint, "OnBuild": None, "Labels": merged_labels,
        "StopSignal": config.get("StopSignal") or image_config.get("StopSignal"),
        "StopTimeout": config.get("StopTimeout"),
        "Healthcheck": config.get("Healthcheck") or image_config.get("Healthcheck"),
        "ExposedPorts": {**(image_config.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})} or None,
    }
    host_config = {
        "Binds": host.get("Binds"), "NetworkMode": host.get("NetworkMode") or "default",
        "PortBindings": host.get("PortBindings") or {}, "RestartPolicy": policy,
        "AutoRemove": bool(host.get("AutoRemove")),
        "LogConfig": {"Type": (host.get("LogConfig") or {}).get("Type") or "json-file",
                      "Config": (host.get("LogConfig") or {}).get("Config") or {}},
        **{k: v for k, v in host.items() if k not in ("Binds", "NetworkMode", "PortBindings", "RestartPolicy",
                                                         "AutoRemove", "LogConfig")},
    }
    host_config.setdefault("ShmSize", 64 * 1024 * 1024)
    return {
        "Id": cid, "Created": logs.timestamp(), "Path": argv[0], "Args": argv[1:],
        "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                  "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME},
        "Image": image["Id"], "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": "",
        "Name": "/" + (name.lstrip("/") if name else names.generate_name(taken)),
        "RestartCount": 0, "Driver": "", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host_config, "Mounts": [],
        "Config": full_config,
        "NetworkSettings": network_settings(host_config["NetworkMode"]),
        "Cais": {"ImageRef": config.get("Image")},
    }


def network_settings(mode: str) -> dict:
    endpoint = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": "",
                "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {mode if mode not in ("default", "bridge") else "none": endpoint}}


# HostConfig fields dockerd always reports, at their defaults when the client left them out
# (docker-py and compose send only what they set; the docker CLI sends them all)
HOST_CONFIG_DEFAULTS: dict = {
    "ContainerIDFile": "", "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
    "CapDrop": None, "CgroupnsMode": "host", "Dns": None, "DnsOptions": None, "DnsSearch": None, "ExtraHosts": None,
    "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
    "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
    "UsernsMode": "", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
    "BlkioWeight": 0, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}


# the Go structs' field order (container.InspectResponse, HostConfig, Config, EndpointSettings):
# dockerd writes it, and the docker CLI re-encodes what it decodes in it (`inspect -f '{{json .}}'`)
_INSPECT_ORDER = ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath", "HostsPath",
                  "LogPath", "Name", "RestartCount", "Driver", "Platform", "MountLabel", "ProcessLabel",
                  "AppArmorProfile", "ExecIDs", "HostConfig", "GraphDriver", "SizeRw", "SizeRootFs", "Mounts", "Config",
                  "NetworkSettings")
_HOST_CONFIG_ORDER = (
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove",
    "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd", "CapDrop", "CgroupnsMode", "Dns",
    "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode",
    "Privileged", "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode",
    "ShmSize", "Sysctls", "Runtime", "Isolation", "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight",
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices",
    "DeviceCgroupRules", "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap",
    "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps",
    "IOMaximumBandwidth", "Mounts", "MaskedPaths", "ReadonlyPaths", "Init")
_CONFIG_ORDER = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
                 "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
                 "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout",
                 "Shell")
_CONFIG_OMITEMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
                     "StopTimeout", "Shell")
_ENDPOINT_ORDER = ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "GwPriority", "NetworkID",
                   "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address",
                   "GlobalIPv6PrefixLen", "DNSNames")


def _ordered(d: dict, order: tuple[str, ...]) -> dict:
    """D with ORDER's keys first, in that order (the others after, as they were)."""
    return {**{k: d[k] for k in order if k in d}, **d}


def inspect(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "Cais"}
    out["HostConfig"] = _ordered({**HOST_CONFIG_DEFAULTS, **record["HostConfig"]}, _HOST_CONFIG_ORDER)
    config = {k: v for k, v in record["Config"].items() if not (k in _CONFIG_OMITEMPTY and v in (None, "", False, {}))}
    out["Config"] = _ordered(config, _CONFIG_ORDER)
    if isinstance(out.get("GraphDriver"), dict):
        out["GraphDriver"] = _ordered(out["GraphDriver"], ("Data", "Name"))
    settings = out.get("NetworkSettings") or {}
    if settings.get("Networks"):
        out["NetworkSettings"] = {**settings, "Networks": {
            name: _ordered({"GwPriority": 0, **endpoint}, _ENDPOINT_ORDER)
            for name, endpoint in settings["Networks"].items()}}
    return _ordered(out, _INSPECT_ORDER)


def _since(ts: str) -> float:
    try:
        return time.time() - logs.parse_timestamp(ts)
    except InvalidParameter:
        return 0


def status_text(record: dict) -> str:
    state = record["State"]
    if state.get("Restarting"):
        return f"Restarting ({state['ExitCode']}) {humanize.duration(_since(state['FinishedAt']))} ago"
    if state["Running"]:
        text = f"Up {humanize.duration(_since(state['StartedAt']))}"
        health = (state.get("Health") or {}).get("Status")
        if state["Paused"]:
            text += " (Paused)"
        elif health:
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if state["Status"] == "created":
        return "Created"
    if state["Status"] == "removing":
        return "Removal In Progress"
    if state["FinishedAt"] == ZERO_TIME:
        return "Created"
    return f"Exited ({state['ExitCode']}) {humanize.duration(_since(state['FinishedAt']))} ago"


def summary(record: dict) -> dict:
    config = record["Config"]
    argv = [record["Path"], *record["Args"]]
    return {
        "Id": record["Id"], "Names": [record["Name"]], "Image": config.get("Image") or record["Image"],
        "ImageID": record["Image"], "Command": " ".join(shlex.quote(a) if " " in a else a for a in argv),
        "Created": int(logs.parse_timestamp(record["Created"])),
        "Ports": ports.summary(record["NetworkSettings"].get("Ports")),
        "Labels": config.get("Labels") or {}, "State": record["State"]["Status"], "Status": status_text(record),
        "HostConfig": {"NetworkMode": record["HostConfig"].get("NetworkMode", "none")},
        "NetworkSettings": {"Networks": record["NetworkSettings"]["Networks"]}, "Mounts": record.get("Mounts", []),
    }


def list_filter(records: list[dict], filters: dict[str, list[str]], *, all: bool, limit: int | None,
                resolve_image: callable) -> list[dict]:  # type: ignore[valid-type]
    for key in filters:
        if key not in _LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    for s in filters.get("status", []):
        if s not in STATUSES:
            raise InvalidParameter(f"invalid filter 'status={s}'")
    out = []
    for r in records:
        state = r["State"]
        if not all and not state["Running"] and not filters.get("status") and limit in (None, -1, 0):
            continue
        if any(not any(r["Id"].startswith(v) for v in filters["id"]) for _ in [0] if filters.get("id")):
            continue
        if filters.get("name") and not any(v.lstrip("/") in r["Name"].lstrip("/") for v in filters["name"]):
            continue
        if filters.get("status") and state["Status"] not in filters["status"]:
            continue
        if filters.get("exited") and (state["Running"] or state["Status"] != "exited"
                                      or str(state["ExitCode"]) not in filters["exited"]):
            continue
        labels = r["Config"].get("Labels") or {}
        if not all_labels_match(labels, filters.get("label", [])):
            continue
        if filters.get("ancestor"):
            wanted = {resolve_image(a) for a in filters["ancestor"]}  # only now: it needs the image store
            if r["Image"] not in wanted and r["Config"].get("Image") not in filters["ancestor"]:
                continue
        if filters.get("health"):
            health = (state.get("Health") or {}).get("Status", "none")
            if health not in filters["health"]:
                continue
        if filters.get("volume") and not any(  # a volume's name or a mount's destination (docker)
                m.get("Name") in filters["volume"] or m.get("Destination") in filters["volume"]
                for m in r.get("Mounts") or []):
            continue
        out.append(r)
    if limit and limit > 0:
        out = out[:limit]
    return out


def all_labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True
