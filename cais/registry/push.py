"""Push an image (a manifest or index and its blobs) from the content store to a registry.

Each blob is first looked up with HEAD (skipped when the registry has it), then mounted from
another repository of the same registry when one is named, and uploaded otherwise: monolithic
(POST + PUT) or, with `chunk_size`, in PATCH chunks. Manifests go last, children of an index
by digest before the index, the top one by the reference's tag.
"""

from __future__ import annotations

import asyncio

from cais.image.content import BlobNotFound, ContentStore
from cais.image.manifest import Descriptor, Index, Manifest, ManifestError, parse_manifest
from cais.image.reference import Reference
from cais.registry.client import Registry, RetryPolicy
from cais.registry.credentials import Credentials
from cais.registry.errors import RegistryError
from cais.registry.hosts import RegistryHosts
from cais.registry.progress import ProgressCallback, ProgressEvent, short_id

MAX_CONCURRENT_UPLOADS = 5


async def push(ref: Reference, store: ContentStore, digest: str, *, hosts: RegistryHosts | None = None,
               credentials: Credentials | None = None, progress: ProgressCallback | None = None,
               chunk_size: int | None = None, mount_from: tuple[str, ...] = (),
               concurrency: int = MAX_CONCURRENT_UPLOADS, retry: RetryPolicy | None = None) -> str:
    """Push the manifest or index `digest` to `ref` (by its tag, or its digest); return the digest."""
    emit = progress or (lambda event: None)
    if ref.digest and ref.digest != digest:
        raise RegistryError(f"cannot push {digest} as {ref}: the digests differ")
    async with Registry(ref.domain, hosts=hosts, credentials=credentials, retry=retry) as registry:
        pusher = _Pusher(registry, ref.path, store, emit, chunk_size, mount_from, concurrency)
        body, media_type, parsed = pusher.load(digest)
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                child_body, child_type, child_parsed = pusher.load(child.digest)
                if isinstance(child_parsed, Manifest):
                    await pusher.blobs(child_parsed)
                await registry.put_manifest(ref.path, child.digest, child_body, child_type)
        else:
            await pusher.blobs(parsed)
        tag = ref.tag or ref.digest or "latest"
        pushed = await registry.put_manifest(ref.path, tag, body, media_type)
    emit(ProgressEvent("", f"{tag}: digest: {pushed} size: {len(body)}"))
    return pushed


class _Pusher:
    def __init__(self, registry: Registry, repo: str, store: ContentStore, emit: ProgressCallback,
                 chunk_size: int | None, mount_from: tuple[str, ...], concurrency: int) -> None:
        self.registry = registry
        self.repo = repo
        self.store = store
        self.emit = emit
        self.chunk_size = chunk_size
        self.mount_from = tuple(r for r in mount_from if r != repo)
        self.limit = asyncio.Semaphore(max(1, concurrency))
        self.done: set[str] = set()

    def load(self, digest: str) -> tuple[bytes, str, Manifest | Index]:
        try:
            body = self.store.read(digest)
            parsed = parse_manifest(body)
        except BlobNotFound:
            raise RegistryError(f"cannot push {digest}: it is not in the local store") from None
        except ManifestError as e:
            raise RegistryError(f"cannot push {digest}: {e}") from None
        return body, parsed.media_type, parsed

    async def blobs(self, manifest: Manifest) -> None:
        todo = [(manifest.config, False)] + [(layer, True) for layer in manifest.layers]
        jobs = []
        for desc, is_layer in todo:
            if desc.digest in self.done:
                continue
            self.done.add(desc.digest)
            if is_layer:
                self.emit(ProgressEvent(short_id(desc.digest), "Preparing"))
            jobs.append(asyncio.create_task(self.blob(desc, is_layer)))
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            raise

    async def blob(self, desc: Descriptor, is_layer: bool) -> None:
        layer_id = short_id(desc.digest)
        emit = self.emit if is_layer else (lambda event: None)
        if self.limit.locked():
            emit(ProgressEvent(layer_id, "Waiting"))
        async with self.limit:
            if await self.registry.blob_size(self.repo, desc.digest) is not None:
                emit(ProgressEvent(layer_id, "Layer already exists"))
                return
            try:
                path = self.store.path(desc.digest)
                size = self.store.size(desc.digest)
            except BlobNotFound:
                raise RegistryError(f"cannot push blob {desc.digest}: it is not in the local store") from None
            location = None
            for source in self.mount_from:
                location = await self.registry.mount_blob(self.repo, desc.digest, source)
                if location is None:
                    emit(ProgressEvent(layer_id, f"Mounted from {source}"))
                    return
            done = 0

            def on_bytes(n: int) -> None:
                nonlocal done
                done += n
                emit(ProgressEvent(layer_id, "Pushing", done, size))

            retry = self.registry.retry
            for attempt in range(retry.attempts):  # an upload cannot continue after a failure: start over
                done = 0
                try:
                    await self.registry.upload_blob(self.repo, desc.digest, path, size, location=location,
                                                    chunk_size=self.chunk_size, progress=on_bytes)
                    break
                except RegistryError as e:
                    if not e.transient or attempt + 1 >= retry.attempts:
                        raise
                    delay = retry.delay(attempt)
                    emit(ProgressEvent(layer_id, f"Retrying in {max(1, round(delay))} seconds"))
                    await asyncio.sleep(delay)
                    location = None
            emit(ProgressEvent(layer_id, "Pushed"))
