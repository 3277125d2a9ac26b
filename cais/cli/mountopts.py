"""`-v`, `--mount`, `--tmpfs` and `--volumes-from` as docker's CLI sends them.

`-v /ctr` (no source) goes to Config.Volumes, `-v SRC:DST[:MODE]` to HostConfig.Binds with a
`./relative` host path made absolute; `--mount` is parsed here into HostConfig.Mounts
(docker's opts/mount.go); `--tmpfs PATH[:OPTS]` into HostConfig.Tmpfs. The daemon validates the rest.
"""

from __future__ import annotations

import os

from cais.cli.args import ArgumentTypeError, size
from cais.cli.main import CliError

_BOOL = {"true": True, "1": True, "false": False, "0": False}
_KEYS = {"type", "source", "src", "target", "destination", "dst", "readonly", "ro", "consistency",
         "bind-propagation", "bind-nonrecursive", "bind-recursive", "volume-nocopy", "volume-label",
         "volume-driver", "volume-opt", "volume-subpath", "tmpfs-size", "tmpfs-mode"}


def _error(flag: str, item: str, why: str) -> CliError:
    return CliError(f"invalid argument \"{item}\" for \"{flag}\" flag: {why}", 125)


def binds(items: list[str]) -> tuple[list[str], dict]:
    """-v values → (HostConfig.Binds, Config.Volumes)."""
    out, anonymous = [], {}
    for item in items:
        parts = item.split(":")
        if len(parts) == 1:
            anonymous[item] = {}
            continue
        source = parts[0]
        if source == "." or source.startswith("./"):
            source = os.path.abspath(source)  # docker's CLI: "./dir" is relative to here
        out.append(":".join([source, *parts[1:]]))
    return out, anonymous


def _bool(item: str, key: str, value: str) -> bool:
    if value.lower() not in _BOOL:
        raise _error("--mount", item, f"invalid value for {key}: {value}")
    return _BOOL[value.lower()]


def mount(item: str) -> dict:
    """One --mount value → one HostConfig.Mounts entry."""
    m: dict = {"Type": "volume"}
    bind: dict = {}
    volume: dict = {}
    tmpfs: dict = {}
    for field in (f for f in item.split(",") if f):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise _error("--mount", item, f"unexpected key '{key}' in '{field}'")
        if not sep and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise _error("--mount", item, f"invalid field '{field}' must be a key=value pair")
        value = value if sep else "true"
        if key == "type":
            m["Type"] = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("target", "destination", "dst"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _bool(item, key, value)
        elif key == "consistency":
            m["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key in ("bind-nonrecursive", "bind-recursive"):
            raise _error("--mount", item, f"{key} is not supported")
        elif key == "volume-nocopy":
            volume["NoCopy"] = _bool(item, key, value)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            volume["Subpath"] = value
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = size(value)
            except ArgumentTypeError as e:
                raise _error("--mount", item, str(e)) from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise _error("--mount", item, f"invalid value for {key}: {value}") from None
    if not m.get("Target"):
        raise _error("--mount", item, "target is required")
    for prefix, opts, kind in (("bind", bind, "bind"), ("volume", volume, "volume"), ("tmpfs", tmpfs, "tmpfs")):
        if opts and m["Type"] != kind:
            raise _error("--mount", item, f"cannot mix '{prefix}-*' options with mount type '{m['Type']}'")
    if bind:
        m["BindOptions"] = bind
    if volume:
        m["VolumeOptions"] = volume
    if tmpfs:
        m["TmpfsOptions"] = tmpfs
    return m


def tmpfs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        path, _, opts = item.partition(":")
        out[path] = opts
    return out
