"""Manifests and indexes: Docker v2 schema 2, Docker manifest lists, OCI manifests and indexes.

`parse_manifest` reads and validates one from bytes (as fetched from a registry or read from a
blob) and returns a `Manifest` or an `Index`; every problem is a one-line `ManifestError`.
`select_manifest` picks the entry of an index for a platform, with containerd's platform rules
(see platform.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cais.image.content import ContentError, parse_digest
from cais.image.platform import Platform, host_platform, platform_vector

# Manifests and indexes
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)

# Configs
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)

# Layers
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"  # uncompressed; what buildkit may emit

LAYER_COMPRESSION = {
    DOCKER_LAYER: "none", OCI_LAYER: "none", OCI_LAYER_NONDIST: "none",
    DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_FOREIGN_GZIP: "gzip", OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd", OCI_LAYER_NONDIST_ZSTD: "zstd",
}
FOREIGN_LAYER_TYPES = (DOCKER_LAYER_FOREIGN_GZIP, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP,
                       OCI_LAYER_NONDIST_ZSTD)

MAX_MANIFEST_SIZE = 4 << 20  # containerd's and distribution's limit for a manifest body
_GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")


class ManifestError(ValueError):
    """A manifest, index or descriptor that cannot be used; str() is a one-line reason."""


def layer_compression(media_type: str) -> str:
    """'none', 'gzip' or 'zstd' for a layer media type; ManifestError for anything else."""
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError:
        raise ManifestError(f"unsupported layer media type: {media_type}") from None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None

    @property
    def is_image(self) -> bool:
        """An image (runnable), as opposed to an OCI artifact such as a signature or SBOM."""
        return self.config.media_type in CONFIG_TYPES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "config": self.config.to_dict(), "layers": [d.to_dict() for d in self.layers]}
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dumps(self.to_dict())


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "manifests": [d.to_dict() for d in self.manifests]}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dumps(self.to_dict())


def dumps(obj: Any) -> bytes:
    """Compact, key-ordered JSON: the bytes whose digest names a manifest or config cais writes."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def load_json(data: bytes, what: str, limit: int = MAX_MANIFEST_SIZE) -> dict[str, Any]:
    """Decode a JSON object of at most `limit` bytes, or raise ManifestError."""
    if len(data) > limit:
        raise ManifestError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return obj


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse and validate a manifest or index. `media_type` is the Content-Type it came with, if any."""
    obj = load_json(data, "manifest")
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("manifest: mediaType must be a string")
    given = (media_type or "").split(";")[0].strip()
    schema = obj.get("schemaVersion")
    if schema == 1 or declared in DOCKER_SCHEMA1 or given in DOCKER_SCHEMA1:
        raise ManifestError("Docker image manifest schema 1 is not supported (deprecated since Docker 1.10)")
    if schema != 2 or isinstance(schema, bool):
        raise ManifestError(f"manifest: unsupported schemaVersion {schema!r}")
    if given not in _GENERIC_TYPES and declared and given != declared:
        raise ManifestError(f"manifest: mediaType {declared} does not match the content type {given}")
    kind = declared or (given if given not in _GENERIC_TYPES else "")
    if "manifests" in obj and ("layers" in obj or "config" in obj):
        raise ManifestError("manifest: has both 'manifests' and 'layers'/'config': ambiguous document refused")
    if not kind:  # OCI allows mediaType to be absent: tell manifest from index by their fields
        kind = OCI_INDEX if "manifests" in obj else OCI_MANIFEST
    if kind in INDEX_TYPES:
        return _parse_index(obj, kind)
    if kind in MANIFEST_TYPES:
        return _parse_image_manifest(obj, kind)
    raise ManifestError(f"unsupported manifest media type: {kind}")


def _parse_image_manifest(obj: dict[str, Any], kind: str) -> Manifest:
    if "manifests" in obj:
        raise ManifestError(f"manifest: a {kind} cannot have 'manifests'")
    if not isinstance(obj.get("config"), dict):
        raise ManifestError("manifest: missing config descriptor")
    layers = obj.get("layers", [])
    if not isinstance(layers, list):
        raise ManifestError("manifest: layers must be a list")
    config = parse_descriptor(obj["config"], "config")
    parsed = tuple(parse_descriptor(d, f"layers[{i}]") for i, d in enumerate(layers))
    if config.media_type in CONFIG_TYPES:
        for i, layer in enumerate(parsed):
            if layer.media_type not in LAYER_COMPRESSION:
                raise ManifestError(f"manifest: layers[{i}]: unsupported layer media type {layer.media_type}")
    subject = parse_descriptor(obj["subject"], "subject") if obj.get("subject") is not None else None
    return Manifest(kind, config, parsed, _annotations(obj, "manifest"), subject)


def _parse_index(obj: dict[str, Any], kind: str) -> Index:
    if "layers" in obj or "config" in obj:
        raise ManifestError(f"manifest: a {kind} cannot have 'layers' or 'config'")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError("index: manifests must be a list")
    return Index(kind, tuple(parse_descriptor(d, f"manifests[{i}]") for i, d in enumerate(entries)),
                 _annotations(obj, "index"))


def parse_descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: descriptor must be a JSON object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}: missing mediaType")
    if not isinstance(digest, str):
        raise ManifestError(f"{where}: missing digest")
    try:
        parse_digest(digest)
    except ContentError as e:
        raise ManifestError(f"{where}: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: size must be a non-negative integer")
    urls = obj.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestError(f"{where}: urls must be a list of strings")
    platform = None
    if obj.get("platform") is not None:
        try:
            platform = Platform.from_dict(obj["platform"])
        except ValueError as e:
            raise ManifestError(f"{where}: {e}") from None
    artifact_type = obj.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError(f"{where}: artifactType must be a string")
    return Descriptor(media_type, digest, size, tuple(urls), _annotations(obj, where), platform, artifact_type)


def _annotations(obj: dict[str, Any], where: str) -> dict[str, str]:
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise ManifestError(f"{where}: annotations must map strings to strings")
    return ann


def matching_manifests(index: Index, platform: Platform | None = None) -> list[Descriptor]:
    """Entries of `index` that run on `platform` (default: this host), best first.

    containerd's order: the exact platform, then compatible ones (amd64 v3 → v2 → v1 → 386,
    arm64 → arm/v8 → v7 …); entries without a platform come last; non-manifest entries never.
    """
    vector = platform_vector(platform or host_platform())
    ranked = []
    for pos, desc in enumerate(index.manifests):
        if desc.media_type not in MANIFEST_TYPES + INDEX_TYPES:
            continue
        if desc.platform is None:
            ranked.append((len(vector), pos, desc))
            continue
        candidate = desc.platform.normalized()
        for rank, wanted in enumerate(vector):
            if candidate.matches(wanted):
                ranked.append((rank, pos, desc))
                break
    return [desc for _, _, desc in sorted(ranked, key=lambda r: (r[0], r[1]))]


def select_manifest(index: Index, platform: Platform | None = None) -> Descriptor:
    """The best entry of `index` for `platform`, or docker's error when there is none."""
    wanted = platform or host_platform()
    found = matching_manifests(index, wanted)
    if not found:
        raise ManifestError(f"no matching manifest for {wanted} in the manifest list entries")
    return found[0]
