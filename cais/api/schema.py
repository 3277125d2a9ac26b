"""The Go types of the request bodies dockerd decodes, so a value of the wrong type is docker's 400.

dockerd unmarshals a body into typed structs: `{"HostConfig": {"Memory": "lots"}}` never reaches
the daemon, it is `json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory
of type int64`. `check()` gives the same answer before the engine sees the body. A spec is a Go
type name (`"string"`, `"int64"`, …), `("[]", spec)`, `("map", spec)` or a `Struct` (unknown
fields are ignored and `null` is always accepted, as in Go).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cais.api.errors import BadRequest

_INT_RANGES = {"int": (-(2**63), 2**63 - 1), "int64": (-(2**63), 2**63 - 1), "duration": (-(2**63), 2**63 - 1), "uint16": (0, 2**16 - 1),
               "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1), "uint": (0, 2**64 - 1)}


@dataclass
class Struct:
    name: str
    fields: dict[str, object] = field(default_factory=dict)
    package: str = ""  # Go's package, in the type's name in messages: network.NetworkingConfig


def _kind(value: object, spec: object) -> str:
    """What Go's decoder calls a JSON value in its error (a number with its text when it is not an integer
    that fits)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}" if isinstance(spec, str) and spec in _INT_RANGES else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_name(spec: object) -> str:
    if isinstance(spec, Struct):
        return f"{spec.package}.{spec.name}" if spec.package else spec.name
    if isinstance(spec, tuple):
        kind, inner = spec
        return f"[]{_type_name(inner)}" if kind == "[]" else f"map[string]{_type_name(inner)}"
    # a StrSlice that is neither a list nor a string is reported by its fallback, a string
    return {"strslice": "string", "any": "interface {}", "duration": "time.Duration"}.get(str(spec), str(spec))


def _fits(value: object, spec: object) -> bool:
    if spec == "any":
        return True
    if spec == "string":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    if spec == "float64":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(spec, str) and spec in _INT_RANGES:
        low, high = _INT_RANGES[spec]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if spec == "strslice":  # a string or a list of strings
        return isinstance(value, (str, list))
    if isinstance(spec, tuple):
        return isinstance(value, list if spec[0] == "[]" else dict)
    return isinstance(value, dict)


def _walk(value: object, spec: object, struct: str, path: str) -> None:
    if value is None:
        return
    if not _fits(value, spec):
        raise BadRequest(f"json: cannot unmarshal {_kind(value, spec)} into Go struct field {struct}.{path} of type "
                         f"{_type_name(spec)}")
    if spec == "strslice" and isinstance(value, list):
        for item in value:
            _walk(item, "string", struct, path)
    elif isinstance(spec, tuple):
        items = value if spec[0] == "[]" else value.values()  # type: ignore[union-attr]
        for item in items:  # type: ignore[union-attr]
            _walk(item, spec[1], struct, path)
    elif isinstance(spec, Struct):
        for key, item in value.items():  # type: ignore[union-attr]
            inner = _lookup(spec, key)
            if inner is not None:
                _walk(item, inner, spec.name, f"{path}.{key}" if path else key)


def _lookup(spec: Struct, key: str) -> object:
    """Go matches a JSON key to a field case-insensitively."""
    if key in spec.fields:
        return spec.fields[key]
    lower = key.lower()
    return next((v for k, v in spec.fields.items() if k.lower() == lower), None)


def check(body: dict, spec: Struct) -> dict:
    """`body` unchanged if every field it has fits its Go type, else docker's 400."""
    _walk(body, spec, spec.name, "")
    return body


S, I64, BOOL = "string", "int64", "bool"
STRINGS = ("[]", S)
LABELS = ("map", S)

HEALTHCHECK = Struct("HealthConfig", {"Test": STRINGS, "Interval": "duration", "Timeout": "duration",
                                      "StartPeriod": "duration", "StartInterval": "duration", "Retries": "int"},
                     "container")
CONFIG = {"Hostname": S, "Domainname": S, "User": S, "AttachStdin": BOOL, "AttachStdout": BOOL,
          "AttachStderr": BOOL, "ExposedPorts": ("map", "any"), "Tty": BOOL, "OpenStdin": BOOL, "StdinOnce": BOOL,
          "Env": STRINGS, "Cmd": "strslice", "Healthcheck": HEALTHCHECK, "ArgsEscaped": BOOL, "Image": S,
          "Volumes": ("map", "any"), "WorkingDir": S, "Entrypoint": "strslice", "NetworkDisabled": BOOL,
          "MacAddress": S, "OnBuild": STRINGS, "Labels": LABELS, "StopSignal": S, "StopTimeout": "int",
          "Shell": "strslice"}

WEIGHT_DEVICE = Struct("WeightDevice", {"Path": S, "Weight": "uint16"}, "blkiodev")
THROTTLE_DEVICE = Struct("ThrottleDevice", {"Path": S, "Rate": "uint64"}, "blkiodev")
RESOURCES = {
    "CpuShares": I64, "Memory": I64, "NanoCpus": I64, "CgroupParent": S, "BlkioWeight": "uint16",
    "BlkioWeightDevice": ("[]", WEIGHT_DEVICE), "BlkioDeviceReadBps": ("[]", THROTTLE_DEVICE),
    "BlkioDeviceWriteBps": ("[]", THROTTLE_DEVICE), "BlkioDeviceReadIOps": ("[]", THROTTLE_DEVICE),
    "BlkioDeviceWriteIOps": ("[]", THROTTLE_DEVICE), "CpuPeriod": I64, "CpuQuota": I64, "CpuRealtimePeriod": I64,
    "CpuRealtimeRuntime": I64, "CpusetCpus": S, "CpusetMems": S,
    "Devices": ("[]", Struct("DeviceMapping", {"PathOnHost": S, "PathInContainer": S, "CgroupPermissions": S}, "container")),
    "DeviceCgroupRules": STRINGS,
    "DeviceRequests": ("[]", Struct("DeviceRequest", {"Driver": S, "Count": "int", "DeviceIDs": STRINGS,
                                                      "Capabilities": ("[]", STRINGS), "Options": LABELS}, "container")),
    "KernelMemory": I64, "KernelMemoryTCP": I64, "MemoryReservation": I64, "MemorySwap": I64,
    "MemorySwappiness": I64, "OomKillDisable": BOOL, "PidsLimit": I64,
    "Ulimits": ("[]", Struct("Ulimit", {"Name": S, "Hard": I64, "Soft": I64}, "units")), "CpuCount": I64,
    "CpuPercent": I64, "IOMaximumIOps": "uint64", "IOMaximumBandwidth": "uint64",
}
RESTART_POLICY = Struct("RestartPolicy", {"Name": S, "MaximumRetryCount": "int"}, "container")
MOUNT = Struct("Mount", {
    "Type": S, "Source": S, "Target": S, "ReadOnly": BOOL, "Consistency": S,
    "BindOptions": Struct("BindOptions", {"Propagation": S, "NonRecursive": BOOL}, "mount"),
    "VolumeOptions": Struct("VolumeOptions", {"NoCopy": BOOL, "Labels": LABELS, "DriverConfig": Struct(
        "Driver", {"Name": S, "Options": LABELS}, "mount")}, "mount"),
    "TmpfsOptions": Struct("TmpfsOptions", {"SizeBytes": I64, "Mode": "uint32"}, "mount"),
}, "mount")
HOST_CONFIG = Struct("HostConfig", {
    "Binds": STRINGS, "ContainerIDFile": S, "LogConfig": Struct("LogConfig", {"Type": S, "Config": LABELS}, "container"),
    "NetworkMode": S, "PortBindings": ("map", ("[]", Struct("PortBinding", {"HostIp": S, "HostPort": S}, "nat"))),
    "RestartPolicy": RESTART_POLICY, "AutoRemove": BOOL, "VolumeDriver": S, "VolumesFrom": STRINGS,
    "ConsoleSize": ("[]", "uint"), "Annotations": LABELS, "CapAdd": "strslice", "CapDrop": "strslice",
    "CgroupnsMode": S, "Dns": STRINGS, "DnsOptions": STRINGS, "DnsSearch": STRINGS, "ExtraHosts": STRINGS,
    "GroupAdd": STRINGS, "IpcMode": S, "Cgroup": S, "Links": STRINGS, "OomScoreAdj": "int", "PidMode": S,
    "Privileged": BOOL, "PublishAllPorts": BOOL, "ReadonlyRootfs": BOOL, "SecurityOpt": STRINGS,
    "StorageOpt": LABELS, "Tmpfs": LABELS, "UTSMode": S, "UsernsMode": S, "ShmSize": I64, "Sysctls": LABELS,
    "Runtime": S, "Isolation": S, "Mounts": ("[]", MOUNT), "MaskedPaths": STRINGS, "ReadonlyPaths": STRINGS,
    "Init": BOOL, **RESOURCES,
}, "container")
ENDPOINT = Struct("EndpointSettings", {
    "IPAMConfig": Struct("EndpointIPAMConfig", {"IPv4Address": S, "IPv6Address": S, "LinkLocalIPs": STRINGS}, "network"),
    "Links": STRINGS, "Aliases": STRINGS, "NetworkID": S, "EndpointID": S, "Gateway": S, "IPAddress": S,
    "IPPrefixLen": "int", "IPv6Gateway": S, "GlobalIPv6Address": S, "GlobalIPv6PrefixLen": "int", "MacAddress": S,
    "DriverOpts": LABELS,
}, "network")
CONTAINER_CREATE = Struct("ContainerConfigWrapper", {
    **CONFIG, "HostConfig": HOST_CONFIG,
    "NetworkingConfig": Struct("NetworkingConfig", {"EndpointsConfig": ("map", ENDPOINT)}, "network"),
})
CONTAINER_UPDATE = Struct("UpdateConfig", {**RESOURCES, "RestartPolicy": RESTART_POLICY})
COMMIT = Struct("Config", CONFIG)
EXEC_CREATE = Struct("ExecConfig", {
    "User": S, "Privileged": BOOL, "Tty": BOOL, "ConsoleSize": ("[]", "uint"), "AttachStdin": BOOL,
    "AttachStderr": BOOL, "AttachStdout": BOOL, "Detach": BOOL, "DetachKeys": S, "Env": STRINGS, "WorkingDir": S,
    "Cmd": "strslice",
})
EXEC_START = Struct("ExecStartCheck", {"Detach": BOOL, "Tty": BOOL, "ConsoleSize": ("[]", "uint")})
VOLUME_CREATE = Struct("VolumeCreateBody", {"Name": S, "Driver": S, "DriverOpts": LABELS, "Labels": LABELS})
IPAM = Struct("IPAM", {"Driver": S, "Options": LABELS, "Config": ("[]", Struct("IPAMConfig", {
    "Subnet": S, "IPRange": S, "Gateway": S, "AuxiliaryAddresses": LABELS}, "network"))}, "network")
NETWORK_CREATE = Struct("NetworkCreateRequest", {
    "Name": S, "CheckDuplicate": BOOL, "Driver": S, "Scope": S, "EnableIPv4": BOOL, "EnableIPv6": BOOL, "IPAM": IPAM,
    "Internal": BOOL,
    "Attachable": BOOL, "Ingress": BOOL, "ConfigOnly": BOOL, "ConfigFrom": Struct("ConfigReference", {"Network": S}, "network"),
    "Options": LABELS, "Labels": LABELS,
})
NETWORK_CONNECT = Struct("NetworkConnect", {"Container": S, "EndpointConfig": ENDPOINT})
NETWORK_DISCONNECT = Struct("NetworkDisconnect", {"Container": S, "Force": BOOL})
AUTH = Struct("AuthConfig", {"username": S, "password": S, "auth": S, "email": S, "serveraddress": S,
                             "identitytoken": S, "registrytoken": S})
