"""Mount specs as docker's CLI and API give them, and the OCI mounts they become.

Sources: HostConfig.Binds (`-v`), HostConfig.Mounts (`--mount`), HostConfig.Tmpfs (`--tmpfs`),
HostConfig.VolumesFrom (`--volumes-from`, resolved by the engine, which knows containers) and the
image's VOLUMEs. The rules are docker's (daemon/volume/mounts/linux_parser.go): targets absolute
and not `/`, modes rw|ro, z|Z, one propagation, nocopy for volumes only; a missing `-v` host path
is created, a missing `--mount` source is an error. cais refuses `..` in any path outright.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import asdict, dataclass, field

from cais.volume import names
from cais.volume.errors import InvalidVolume

PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
DEFAULT_PROPAGATION = "rprivate"
TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")
TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async", "dirsync",
               "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
               "nostrictatime", "mand", "nomand", "lazytime", "nolazytime", "remount", "private", "rprivate",
               "shared", "rshared", "slave", "rslave", "bind", "rbind", "tmpcopyup", "defaults")


@dataclass
class MountPoint:
    """One mount of a container; `record()` is docker's inspect entry, the rest is cais's."""

    type: str                      # volume | bind | tmpfs
    destination: str
    source: str = ""               # bind: host path; volume: filled in from the volume's Mountpoint
    name: str = ""                 # volume name ("" until an anonymous one is created)
    driver: str = ""
    rw: bool = True
    mode: str = ""
    propagation: str = ""
    copy_data: bool = True         # volume: fill it from the image when empty (off with nocopy)
    create_source: bool = False    # bind from -v: make a missing host directory
    driver_options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    tmpfs_options: str = ""        # tmpfs: mount data (size=…,mode=…)
    subpath: str = ""              # volume: mount this directory of the volume only (resolved in it)
    idmap: bool = False            # bind from -v …:idmap: idmapped under userns-remap, as volumes are

    def record(self) -> dict:
        out = {"Type": self.type}
        if self.type == "volume":
            out["Name"] = self.name
        out.update({"Source": self.source, "Destination": self.destination})
        if self.type == "volume":
            out["Driver"] = self.driver or "local"
        out.update({"Mode": self.mode, "RW": self.rw, "Propagation": self.propagation})
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MountPoint:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def clean_target(path: object, spec: object = None) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidVolume(f"invalid mount config: target must not be empty{_of(spec)}")
    if not path.startswith("/"):
        raise InvalidVolume(f"invalid mount config: invalid mount path: '{path}' mount path must be absolute")
    _no_dotdot(path, "mount path")
    clean = posixpath.normpath(path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidVolume("invalid specification: destination can't be '/'")
    return clean


def _of(spec: object) -> str:
    return f": {spec}" if spec else ""


def _no_dotdot(path: str, what: str) -> None:
    if ".." in path.split("/"):
        raise InvalidVolume(f"invalid {what} {path!r}: '..' is not allowed")
    if "\x00" in path:
        raise InvalidVolume(f"invalid {what}: NUL byte")


def _host_source(path: str) -> str:
    _no_dotdot(path, "source path")
    return posixpath.normpath(path) if path != "/" else "/"


def _parse_mode(mode: str, raw: str) -> dict:
    seen: dict[str, str] = {}
    for opt in mode.split(","):
        kind = ("rw" if opt in ("rw", "ro") else "label" if opt in ("z", "Z") else
                "propagation" if opt in PROPAGATIONS else "copy" if opt == "nocopy" else
                "idmap" if opt == "idmap" else None)
        if kind is None or kind in seen:
            raise InvalidVolume(f"invalid mode: {mode}" if kind is None else f"invalid volume specification: '{raw}'")
        seen[kind] = opt
    return seen


def parse_bind(raw: object) -> MountPoint:
    """One HostConfig.Binds entry (`-v`): name:/ctr, /host:/ctr[:mode], or /ctr alone (anonymous)."""
    if not isinstance(raw, str) or not raw:
        raise InvalidVolume(f"invalid volume specification: '{raw}'")
    parts = raw.split(":")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise InvalidVolume(f"invalid volume specification: '{raw}'")
    if len(parts) == 1:
        return MountPoint("volume", clean_target(parts[0], raw), rw=True)
    if len(parts) == 2 and all(o in ("rw", "ro", "z", "Z", "nocopy", *PROPAGATIONS) for o in parts[1].split(",")):
        raise InvalidVolume(f"invalid volume specification: '{raw}'")  # /ctr:ro names no source
    source, target = parts[0], clean_target(parts[1], raw)
    mode = parts[2] if len(parts) == 3 else ""
    opts = _parse_mode(mode, raw) if mode else {}
    rw = opts.get("rw", "rw") == "rw"
    if source.startswith("/"):
        if "copy" in opts:
            raise InvalidVolume(f"invalid mount config for type \"bind\": field VolumeOptions must not be "
                                f"specified: '{raw}'")
        return MountPoint("bind", target, source=_host_source(source), rw=rw, mode=mode,
                          propagation=opts.get("propagation", DEFAULT_PROPAGATION), create_source=True,
                          idmap="idmap" in opts)
    names.validate(source)
    if "propagation" in opts or "idmap" in opts:
        raise InvalidVolume(f"invalid mount config for type \"volume\": field BindOptions must not be "
                            f"specified: '{raw}'")
    return MountPoint("volume", target, name=source, rw=rw, mode=mode or "z", copy_data="copy" not in opts)


def _mount_field(m: dict, key: str, kind: type, default: object) -> object:
    value = m.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidVolume(f"invalid mount config: {key} must be a {kind.__name__}")
    return value


def tmpfs_data(size: int, mode: int, readonly: bool = False) -> str:
    """docker's ConvertTmpfsOptions: size in the largest exact unit, mode in octal."""
    opts = []
    if size:
        for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % unit == 0:
                opts.append(f"size={size // unit}{suffix}")
                break
        else:
            opts.append(f"size={size}")
    if mode:
        opts.append(f"mode={mode:o}")
    if readonly:
        opts.append("ro")
    return ",".join(opts)


def parse_mount(m: object) -> MountPoint:
    """One HostConfig.Mounts entry (`--mount`), validated as docker's validateMountConfig."""
    if not isinstance(m, dict):
        raise InvalidVolume("invalid mount config: expected an object")
    kind = m.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidVolume(f"invalid mount config for type \"{kind}\": mount type unknown")
    pre = f"invalid mount config for type \"{kind}\""
    target = m.get("Target")
    if not target:
        raise InvalidVolume(f"{pre}: field Target must not be empty")
    if not isinstance(target, str) or not target.startswith("/"):
        raise InvalidVolume(f"{pre}: invalid mount path: '{target}' mount path must be absolute")
    target = clean_target(target)
    source = _mount_field(m, "Source", str, "")
    readonly = bool(_mount_field(m, "ReadOnly", bool, False))
    bind_opts = _mount_field(m, "BindOptions", dict, None)
    vol_opts = _mount_field(m, "VolumeOptions", dict, None)
    tmpfs_opts = _mount_field(m, "TmpfsOptions", dict, None)
    for name, value, allowed in (("BindOptions", bind_opts, "bind"), ("VolumeOptions", vol_opts, "volume"),
                                 ("TmpfsOptions", tmpfs_opts, "tmpfs")):
        if value and kind != allowed:
            raise InvalidVolume(f"{pre}: field {name} must not be specified")
    if kind == "bind":
        if not source:
            raise InvalidVolume(f"{pre}: field Source must not be empty")
        if not source.startswith("/"):
            raise InvalidVolume(f"{pre}: invalid mount path: '{source}' mount path must be absolute")
        source = _host_source(source)
        if not os.path.exists(source):
            raise InvalidVolume(f"{pre}: bind source path does not exist: {source}")
        propagation = (bind_opts or {}).get("Propagation") or DEFAULT_PROPAGATION
        if propagation not in PROPAGATIONS:
            raise InvalidVolume(f"{pre}: invalid propagation mode: {propagation}")
        return MountPoint("bind", target, source=source, rw=not readonly, propagation=propagation)
    if kind == "tmpfs":
        if source:
            raise InvalidVolume(f"{pre}: field Source must not be specified")
        size = _mount_field(tmpfs_opts or {}, "SizeBytes", int, 0)
        mode = _mount_field(tmpfs_opts or {}, "Mode", int, 0)
        if size < 0:  # type: ignore[operator]
            raise InvalidVolume(f"{pre}: invalid tmpfs size: {size}")
        if mode & ~0o7777:  # type: ignore[operator]
            raise InvalidVolume(f"{pre}: invalid tmpfs mode: {mode:o}")
        return MountPoint("tmpfs", target, rw=not readonly, tmpfs_options=tmpfs_data(size, mode, readonly))  # type: ignore[arg-type]
    if source:
        names.validate(source)
    vol_opts = vol_opts or {}
    driver_config = vol_opts.get("DriverConfig") or {}
    if not isinstance(driver_config, dict):
        raise InvalidVolume(f"{pre}: DriverConfig must be an object")
    labels = vol_opts.get("Labels") or {}
    options = driver_config.get("Options") or {}
    if not isinstance(labels, dict) or not isinstance(options, dict):
        raise InvalidVolume(f"{pre}: Labels and DriverConfig.Options must be objects")
    subpath = vol_opts.get("Subpath") or ""
    if not isinstance(subpath, str) or subpath.startswith("/") or ".." in subpath.split("/"):
        raise InvalidVolume(f"{pre}: invalid subpath {subpath!r}: must be relative without any back traversals")
    return MountPoint("volume", target, name=source, driver=driver_config.get("Name") or "local", rw=not readonly, mode="z",
                      copy_data=not vol_opts.get("NoCopy"), driver_options=dict(options), labels=dict(labels),
                      subpath=posixpath.normpath(subpath) if subpath else "")


def parse_tmpfs(target: object, options: object) -> MountPoint:
    """One HostConfig.Tmpfs entry (`--tmpfs /path[:opts]`)."""
    if not isinstance(options, str):
        raise InvalidVolume(f"invalid tmpfs options for {target}: expected a string")
    path = clean_target(target)
    for opt in (o for o in options.split(",") if o):
        key = opt.split("=", 1)[0]
        if ("=" in opt and key not in TMPFS_DATA) or ("=" not in opt and opt not in TMPFS_FLAGS):
            raise InvalidVolume(f"invalid tmpfs option {opt!r} for {path}")
    return MountPoint("tmpfs", path, rw="ro" not in options.split(","), tmpfs_options=options)


def parse_volumes_from(raw: object) -> tuple[str, str]:
    """`container[:ro|rw]` → (container, mode)."""
    if not isinstance(raw, str) or not raw:
        raise InvalidVolume(f"invalid volumes-from: '{raw}'")
    ref, sep, mode = raw.partition(":")
    if not ref or (sep and mode not in ("ro", "rw")):
        raise InvalidVolume(f"invalid mode: {mode}" if ref else f"invalid volumes-from: '{raw}'")
    return ref, mode or "rw"


def check_bind_source(mp: MountPoint) -> None:
    """A -v source that is missing becomes a directory (docker's rule); anything else must exist."""
    try:
        os.stat(mp.source)
    except FileNotFoundError:
        if not mp.create_source:
            raise InvalidVolume(f"invalid mount config for type \"bind\": bind source path does not exist: "
                                f"{mp.source}") from None
        try:
            os.makedirs(mp.source, 0o755, exist_ok=True)
        except OSError as e:
            raise InvalidVolume(f"error while creating mount source path '{mp.source}': {e.strerror}") from None
    except NotADirectoryError:
        raise InvalidVolume(f"invalid mount config: {mp.source}: a path component is not a directory") from None


def check_target_kind(source: str, destination: str, image_is_dir: bool | None) -> None:
    """A directory over a file of the image (or the reverse) is a clear error, not a runtime one."""
    try:
        src_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError:
        return
    if image_is_dir is None or image_is_dir == src_dir:
        return
    if src_dir:
        raise InvalidVolume(f"cannot mount directory {source} over {destination}: a file in the image")
    raise InvalidVolume(f"cannot mount file {source} over {destination}: a directory in the image")


def to_oci(mp: MountPoint) -> dict:
    """The OCI runtime mount of a resolved mount point (volumes and binds are rbind mounts)."""
    if mp.type == "tmpfs":
        opts = ["noexec", "nosuid", "nodev", *[o for o in mp.tmpfs_options.split(",") if o]]
        return {"destination": mp.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}
    opts = ["rbind", mp.propagation or DEFAULT_PROPAGATION]
    if not mp.rw:
        opts.append("ro")
    return {"destination": mp.destination, "type": "bind", "source": mp.source, "options": opts}
