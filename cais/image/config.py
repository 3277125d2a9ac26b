"""Image configs (Docker image JSON / OCI image config): validation, chain IDs, `--change`.

The config's digest is the image ID. Its ``rootfs.diff_ids`` name the uncompressed layers, and
the chain ID of layer n is ``sha256(chainid(n-1) + " " + diffid(n))`` — the name a layer has on
disk, shared by every image that starts with the same layers.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

from cais.image.content import ContentError, parse_digest
from cais.image.manifest import ManifestError, load_json

MAX_CONFIG_SIZE = 8 << 20


class ConfigError(ManifestError):
    """An image config that cannot be used."""


def parse_config(data: bytes) -> dict[str, Any]:
    """Decode and validate an image config; returns the JSON object as is."""
    try:
        cfg = load_json(data, "image config", MAX_CONFIG_SIZE)
    except ManifestError as e:
        raise ConfigError(str(e)) from None
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ConfigError("image config: rootfs.type must be \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ConfigError("image config: rootfs.diff_ids must be a list")
    for d in diff_ids:
        try:
            if not isinstance(d, str):
                raise ContentError(f"invalid digest: {d!r}")
            parse_digest(d)
        except ContentError as e:
            raise ConfigError(f"image config: rootfs.diff_ids: {e}") from None
    for key in ("architecture", "os"):
        if not isinstance(cfg.get(key, ""), str):
            raise ConfigError(f"image config: {key} must be a string")
    if cfg.get("config") is not None and not isinstance(cfg["config"], dict):
        raise ConfigError("image config: config must be an object")
    history = cfg.get("history")
    if history is not None and (not isinstance(history, list) or not all(isinstance(h, dict) for h in history)):
        raise ConfigError("image config: history must be a list of objects")
    return cfg


def diff_ids(cfg: dict[str, Any]) -> list[str]:
    return list(cfg["rootfs"]["diff_ids"])


def chain_ids(diffs: list[str]) -> list[str]:
    """The chain ID of each layer prefix (OCI image-spec, config.md)."""
    out: list[str] = []
    for d in diffs:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply docker's `--change` Dockerfile instructions (commit/import) to a container config.

    docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and
    WORKDIR here; the shell form of CMD/ENTRYPOINT becomes ``/bin/sh -c …`` as in a Dockerfile."""
    out = json.loads(json.dumps(config or {}))
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        op, rest = word.upper(), rest.strip()
        if op in ("CMD", "ENTRYPOINT"):
            out["Cmd" if op == "CMD" else "Entrypoint"] = _command(rest, op)
        elif op == "ENV":
            env = [e for e in out.get("Env") or []]
            for k, v in _pairs(rest, op):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            out["Env"] = env
        elif op == "LABEL":
            out["Labels"] = {**(out.get("Labels") or {}), **dict(_pairs(rest, op))}
        elif op == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = dict(out.get("Volumes") or {})
            for v in _list_or_words(rest):
                vols[v] = {}
            out["Volumes"] = vols
        elif op in ("USER", "WORKDIR", "STOPSIGNAL"):
            if not rest:
                raise ConfigError(f"{op} requires exactly one argument")
            out[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[op]] = rest
        elif op == "ONBUILD":
            out["OnBuild"] = [*(out.get("OnBuild") or []), rest]
        else:
            raise ConfigError(f"{word} is not a valid change command")
    return out


def _command(rest: str, op: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if not rest:
        raise ConfigError(f"{op} requires at least one argument")
    return ["/bin/sh", "-c", rest]


def _list_or_words(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    return rest.split()


def _pairs(rest: str, op: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise ConfigError(f"{op}: {e}") from None
    if len(words) == 2 and "=" not in words[0]:  # legacy `ENV key value`
        return [(words[0], words[1])]
    pairs = []
    for w in words:
        k, eq, v = w.partition("=")
        if not k or not eq:
            raise ConfigError(f"{op} names must be followed by '=': {w!r}")
        pairs.append((k, v))
    if not pairs:
        raise ConfigError(f"{op} requires at least one argument")
    return pairs
