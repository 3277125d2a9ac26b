"""RUN --mount: bind (from the context, a stage or an image), cache and tmpfs mounts.

Parsed as BuildKit parses them (comma-separated `key=value`, `type=bind` by default). A bind of
the context shows a copy of the selected files (what .dockerignore keeps), so nothing the user
excluded becomes visible and writes (with `rw`) are thrown away, as in BuildKit. Cache mounts are
directories under the builder's root that outlive builds; `sharing=locked` serializes their users.
Secret and SSH mounts are refused with a clear error.
"""

from __future__ import annotations

import csv
import posixpath
from dataclasses import dataclass

from cais.image.build.parser import DockerfileError

MOUNT_TYPES = ("bind", "cache", "tmpfs")
_SHARING = ("shared", "private", "locked")


@dataclass(frozen=True)
class RunMount:
    type: str
    target: str
    source: str = ""
    source_stage: str | None = None  # from=
    readonly: bool = True
    id: str = ""
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: str | None = None


def _bool(value: str, key: str) -> bool:
    if value == "" or value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise DockerfileError(f"--mount: {key} must be true or false, not {value!r}")


def _int(value: str, key: str, base: int = 10) -> int:
    try:
        return int(value, base)
    except ValueError:
        raise DockerfileError(f"--mount: invalid {key} {value!r}") from None


def parse_mount(spec: str) -> RunMount:
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise DockerfileError(f"--mount: cannot parse {spec!r}") from None
    values: dict[str, str] = {}
    flags: dict[str, bool] = {}
    for item in fields:
        key, has_value, value = item.strip().partition("=")
        key = key.lower()
        if key in ("ro", "readonly", "rw", "readwrite", "required"):
            flags[key] = _bool(value, key) if has_value else True
        elif not has_value:
            raise DockerfileError(f"--mount: {item!r} is not key=value")
        else:
            values[key] = value
    kind = values.pop("type", "bind")
    if kind in ("secret", "ssh"):
        raise DockerfileError(f"RUN --mount=type={kind} is not supported by cais build")
    if kind not in MOUNT_TYPES:
        raise DockerfileError(f"--mount: unsupported mount type {kind!r}")
    target = values.pop("target", None) or values.pop("dst", None) or values.pop("destination", None)
    if not target:
        raise DockerfileError("--mount: a target is required")
    target = posixpath.normpath("/" + target)
    if target == "/":
        raise DockerfileError("--mount: cannot mount over /")
    source = values.pop("source", None) or values.pop("src", None) or ""
    readonly = flags.get("ro", flags.get("readonly", not (flags.get("rw") or flags.get("readwrite"))))
    if kind != "bind" and not (flags.get("ro") or flags.get("readonly")):
        readonly = False
    sharing = values.pop("sharing", "shared")
    if sharing not in _SHARING:
        raise DockerfileError(f"--mount: sharing must be one of {', '.join(_SHARING)}")
    mount = RunMount(kind, target, source, values.pop("from", None), readonly, values.pop("id", ""), sharing,
                     _int(values.pop("mode", "755"), "mode", 8), _int(values.pop("uid", "0"), "uid"),
                     _int(values.pop("gid", "0"), "gid"), values.pop("size", None))
    if values:
        raise DockerfileError(f"--mount: unexpected key {sorted(values)[0]!r} for type={kind}")
    return mount
