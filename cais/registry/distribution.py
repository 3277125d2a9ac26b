"""What a registry says about a reference without pulling it (GET /distribution/{name}/json).

The descriptor of the manifest or index the reference names, and the platforms it serves: each
entry of an index, or for a single image manifest the platform in its config blob (fetched,
size-limited and checked against its digest).
"""

from __future__ import annotations

import json
from typing import Any

from cais.image.content import digest_bytes
from cais.image.manifest import MAX_MANIFEST_SIZE, Index, ManifestError, parse_manifest
from cais.image.platform import Platform
from cais.image.reference import Reference
from cais.registry.client import Registry, pull_scope
from cais.registry.credentials import Credentials
from cais.registry.errors import RegistryError
from cais.registry.hosts import RegistryHosts


def _platform(p: Platform) -> dict[str, Any]:
    out: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
    if p.os_version:
        out["os.version"] = p.os_version
    if p.os_features:
        out["os.features"] = list(p.os_features)
    if p.variant:
        out["variant"] = p.variant
    return out


async def inspect(ref: Reference, *, credentials: Credentials | None = None,
                  hosts: RegistryHosts | None = None) -> dict[str, Any]:
    """docker's DistributionInspect: {"Descriptor": {...}, "Platforms": [...]}."""
    async with Registry(ref.domain, hosts=hosts, credentials=credentials, timeout=60) as registry:
        fetched = await registry.get_manifest(ref.path, ref.digest or ref.tag or "latest")
        try:
            parsed = parse_manifest(fetched.body, fetched.media_type or None)
        except ManifestError as e:
            raise RegistryError(f"manifest {ref}: {e}") from None
        descriptor = {"mediaType": parsed.media_type, "digest": fetched.digest, "size": len(fetched.body)}
        if isinstance(parsed, Index):
            platforms = [_platform(m.platform) for m in parsed.manifests if m.platform is not None]
        else:
            config = await _config_platform(registry, ref.path, parsed.config.digest, parsed.config.size)
            platforms = [] if config is None else [_platform(config)]
    return {"Descriptor": descriptor, "Platforms": platforms}


async def _config_platform(registry: Registry, repo: str, digest: str, size: int) -> Platform | None:
    """The platform of an image config blob; None for a config without one (an artifact)."""
    if size > MAX_MANIFEST_SIZE:
        return None
    async with registry.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=pull_scope(repo),
                                what=f"GET blob {digest}") as resp:
        body = await resp.content.read(MAX_MANIFEST_SIZE + 1)
    if digest_bytes(body, digest.partition(":")[0]) != digest:
        raise RegistryError(f"GET blob {digest}: content does not match its digest")
    try:
        return Platform.from_dict(json.loads(body))
    except ValueError:
        return None
