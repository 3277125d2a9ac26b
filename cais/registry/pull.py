"""Pull an image's blobs (manifests, config, layers) from a registry into the content store.

By tag or digest; through an index to the manifest for the wanted platform; layers downloaded
concurrently (three at a time, as docker does), blobs already in the store skipped, every blob
verified against its digest. Manifests are stored last, so a store never holds a manifest whose
blobs are missing. If the pull fails, the blobs it completed stay (another pull may already be
counting on them, and a retry skips them; the image store's garbage collection removes them if
nothing ever uses them), and partial downloads stay in the ingest area for the next attempt to
resume. Registering the image from the result is the image store's job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from cais.image.content import ContentStore
from cais.image.manifest import Index, Manifest, ManifestError, parse_manifest, select_manifest
from cais.image.platform import Platform
from cais.image.reference import Reference
from cais.registry.client import FetchedManifest, Registry, RetryPolicy
from cais.registry.credentials import Credentials
from cais.registry.errors import RegistryError, UnsupportedMedia
from cais.registry.hosts import Endpoint, HostsError, RegistryHosts
from cais.registry.progress import ProgressCallback, ProgressEvent, short_id

log = logging.getLogger(__name__)

MAX_CONCURRENT_DOWNLOADS = 3
MAX_INDEX_DEPTH = 2


@dataclass
class PullResult:
    digest: str  # of what the reference names: an index or a manifest (docker's "Digest:")
    manifest_digest: str  # the image manifest chosen for the platform
    manifest: Manifest
    media_type: str
    index_digest: str | None = None
    stored: list[str] = field(default_factory=list)  # blobs this pull added to the store

    @property
    def config_digest(self) -> str:
        return self.manifest.config.digest


async def pull(ref: Reference, store: ContentStore, *, platform: Platform | None = None,
               hosts: RegistryHosts | None = None, credentials: Credentials | None = None,
               retry: RetryPolicy | None = None, progress: ProgressCallback | None = None,
               concurrency: int = MAX_CONCURRENT_DOWNLOADS) -> PullResult:
    """Pull `ref` into `store`. Mirrors (for docker.io) are tried first, anonymously, as docker does;
    any failure there falls back to the next mirror and then to the registry itself."""
    hosts = hosts or RegistryHosts()
    try:
        endpoints = hosts.endpoints(ref.domain)
    except HostsError as e:
        raise RegistryError(str(e)) from None
    groups: dict[tuple[str, bool], list[Endpoint]] = {}
    for endpoint in endpoints:
        groups.setdefault((endpoint.host, endpoint.mirror), []).append(endpoint)
    if progress:
        progress(ProgressEvent(ref.tag or ref.digest or "latest", f"Pulling from {ref.path}"))
    for (host, mirror), group in groups.items():
        registry = Registry(ref.domain, hosts=hosts, credentials=None if mirror else credentials,
                            retry=retry, endpoints=group)
        try:
            async with registry:
                return await _pull(registry, ref, store, platform, progress, concurrency)
        except RegistryError as e:
            if not mirror:
                raise
            log.warning("pulling %s from mirror %s failed (%s); trying the next endpoint", ref, host, e)
    raise RegistryError(f"no endpoint for {ref.domain}")


async def _pull(registry: Registry, ref: Reference, store: ContentStore, platform: Platform | None,
                progress: ProgressCallback | None, concurrency: int) -> PullResult:
    emit = progress or (lambda event: None)
    top = await registry.get_manifest(ref.path, ref.digest or ref.tag or "latest")
    chain = [top]
    parsed = _parse(top, ref)
    index_digest = None
    for _ in range(MAX_INDEX_DEPTH):
        if not isinstance(parsed, Index):
            break
        index_digest = chain[-1].digest
        try:
            entry = select_manifest(parsed, platform)
        except ManifestError as e:
            raise RegistryError(f"{ref}: {e}") from None
        chain.append(await registry.get_manifest(ref.path, entry.digest))
        parsed = _parse(chain[-1], ref)
    if not isinstance(parsed, Manifest):
        raise UnsupportedMedia(f"{ref}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
    if not parsed.is_image:
        raise UnsupportedMedia(f"{ref}: not a container image (config type {parsed.config.media_type})")
    result = PullResult(top.digest, chain[-1].digest, parsed, chain[-1].media_type, index_digest)
    await _fetch_blobs(registry, ref, parsed, store, result.stored, emit, concurrency)
    for doc in reversed(chain):
        if not store.has(doc.digest):
            store.put(doc.body, doc.digest)
            result.stored.append(doc.digest)
    emit(ProgressEvent("", f"Digest: {top.digest}"))
    return result


async def _fetch_blobs(registry: Registry, ref: Reference, manifest: Manifest, store: ContentStore,
                       stored: list[str], emit: ProgressCallback, concurrency: int) -> None:
    limit = asyncio.Semaphore(max(1, concurrency))
    seen: set[str] = set()

    async def fetch(digest: str, size: int, is_layer: bool) -> None:
        layer_id = short_id(digest)
        if store.has(digest):
            if is_layer:
                emit(ProgressEvent(layer_id, "Already exists"))
            return
        if is_layer:
            emit(ProgressEvent(layer_id, "Pulling fs layer"))
            if limit.locked():
                emit(ProgressEvent(layer_id, "Waiting"))
        async with limit:
            done = 0

            def on_bytes(n: int) -> None:
                nonlocal done
                done += n
                if is_layer:
                    emit(ProgressEvent(layer_id, "Downloading", done, size))

            if await registry.fetch_blob(ref.path, digest, size, store, on_bytes):
                stored.append(digest)
            if is_layer:
                emit(ProgressEvent(layer_id, "Verifying Checksum"))
                emit(ProgressEvent(layer_id, "Download complete"))

    jobs = []
    for desc, is_layer in [(manifest.config, False), *((layer, True) for layer in manifest.layers)]:
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        jobs.append(asyncio.create_task(fetch(desc.digest, desc.size, is_layer)))
    try:
        await asyncio.gather(*jobs)
    except BaseException:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        raise


def _parse(doc: FetchedManifest, ref: Reference) -> Manifest | Index:
    try:
        return parse_manifest(doc.body, doc.media_type)
    except ManifestError as e:
        raise UnsupportedMedia(f"{ref}: {e}") from None
