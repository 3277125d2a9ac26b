"""A client for one registry: the requests of the OCI distribution spec and Docker's Registry API v2.

`Registry(domain)` finds a working endpoint (mirrors, https, http for insecure hosts) by pinging
`/v2/`, authorizes each request for the scopes it needs (see auth.py), retries idempotent requests
on connection errors, 429 and 5xx with exponential backoff (honouring Retry-After), and follows
blob redirects without leaking credentials to other hosts. Every byte it returns or stores is
checked against its digest: manifests before they are returned, blobs before the content store
publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from cais import __version__
from cais.image.content import CHUNK, ContentError, ContentStore, DigestMismatch, digest_bytes, parse_digest
from cais.image.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
)
from cais.registry.auth import Authorizer
from cais.registry.credentials import Credentials
from cais.registry.errors import TRANSIENT_STATUS, NotFound, RegistryError, from_status
from cais.registry.hosts import Endpoint, HostsError, RegistryHosts

ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

Progress = Callable[[int], None]  # called with the number of bytes just transferred


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base: float = 0.25  # first backoff, doubled each time, with jitter
    cap: float = 10.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.cap)
        return min(self.cap, self.base * (2 ** attempt)) * (0.5 + random.random() / 2)


@dataclass
class FetchedManifest:
    """A manifest or index as the registry sent it, its digest checked."""

    body: bytes
    media_type: str
    digest: str


def pull_scope(repo: str) -> tuple[str, ...]:
    return (f"repository:{repo}:pull",)


def push_scope(repo: str, *mount_from: str) -> tuple[str, ...]:
    return (f"repository:{repo}:pull,push", *(f"repository:{r}:pull" for r in mount_from if r != repo))


class Registry:
    """Requests to one registry domain, e.g. 'docker.io' or '127.0.0.1:5000'. An async context manager."""

    def __init__(self, domain: str, *, hosts: RegistryHosts | None = None,
                 credentials: Credentials | None = None, retry: RetryPolicy | None = None,
                 timeout: float = 300.0, endpoints: list[Endpoint] | None = None) -> None:
        self.domain = domain
        self._endpoints = endpoints
        self.hosts = hosts or RegistryHosts()
        self.retry = retry or RetryPolicy()
        self._credentials = credentials
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._auth: Authorizer | None = None
        self.endpoint: Endpoint | None = None
        self._ping_lock = asyncio.Lock()

    async def __aenter__(self) -> Registry:
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=self._timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": f"cais/{__version__}"},
            connector=aiohttp.TCPConnector(limit=16), auto_decompress=False)
        self._auth = Authorizer(self._session, self._credentials, self._ssl_for_url)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- endpoint and requests -------------------------------------------------------------

    async def ping(self) -> Endpoint:
        """Find the first endpoint that answers /v2/ (200 or 401) and learn its auth challenge."""
        async with self._ping_lock:
            if self.endpoint is not None:
                return self.endpoint
            assert self._session is not None and self._auth is not None, "use `async with Registry(...)`"
            try:
                endpoints = self._endpoints or self.hosts.endpoints(self.domain)
            except HostsError as e:
                raise RegistryError(str(e)) from None
            errors = []
            for endpoint in endpoints:
                try:
                    ssl_ctx = self.hosts.ssl_context(endpoint)
                    async with self._session.get(endpoint.url("/v2/"), ssl=ssl_ctx if ssl_ctx else False,
                                                 allow_redirects=False) as resp:
                        await resp.read()
                        if resp.status == 401:
                            self._auth.challenged(resp.headers.get("WWW-Authenticate"), ())
                        elif resp.status >= 300:
                            errors.append(f"{endpoint.url('/v2/')}: HTTP {resp.status}")
                            continue
                except HostsError as e:
                    raise RegistryError(str(e)) from None
                except (*NETWORK_ERRORS, OSError) as e:
                    errors.append(f"{endpoint.url('/v2/')}: {_reason(e)}")
                    continue
                self.endpoint = endpoint
                return endpoint
            raise RegistryError(f"cannot reach registry {self.domain}: " + "; ".join(errors))

    def _ssl_for_url(self, url: str) -> Any:
        u = URL(url)
        if self.endpoint is not None and u.scheme == "https" and u.raw_authority == self.endpoint.host:
            return self.hosts.ssl_context(self.endpoint) or False
        return None  # aiohttp's default: verified against the system CAs

    @contextlib.asynccontextmanager
    async def request(self, method: str, target: str, *, scopes: tuple[str, ...], what: str,
                      ok: tuple[int, ...] = (200,), headers: dict[str, str] | None = None,
                      body: Callable[[], Any] | None = None, retry: bool = True
                      ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request (path under the endpoint, or an absolute URL from a Location header)."""
        endpoint = await self.ping()
        assert self._session is not None and self._auth is not None
        url = target if target.startswith(("http://", "https://")) else endpoint.url(target)
        attempt = 0
        reauthorized = False
        redirects = 0
        while True:
            send_headers = dict(headers or {})
            same_host = URL(url).raw_authority == endpoint.host
            if same_host and (authorization := await self._auth.header(scopes)):
                send_headers["Authorization"] = authorization
            try:
                resp = await self._session.request(method, url, headers=send_headers,
                                                   data=body() if body else None,
                                                   ssl=self._ssl_for_url(url), allow_redirects=False)
            except NETWORK_ERRORS as e:
                if retry and attempt + 1 < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                tries = f" (after {attempt + 1} attempts)" if retry and attempt else ""
                raise RegistryError(f"{what}: {_reason(e)}{tries}", transient=True) from None
            try:
                if resp.status == 401 and same_host and not reauthorized and \
                        self._auth.challenged(resp.headers.get("WWW-Authenticate"), scopes):
                    reauthorized = True
                    continue
                if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and redirects < 5:
                    location = resp.headers.get("Location")
                    if location:
                        url = str(URL(url).join(URL(location)))
                        redirects += 1
                        continue
                if resp.status in TRANSIENT_STATUS and retry and attempt + 1 < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt, resp.headers.get("Retry-After")))
                    attempt += 1
                    continue
                if resp.status not in ok:
                    data = await resp.content.read(64 << 10) if method != "HEAD" else b""
                    raise from_status(resp.status, data, what)
                yield resp
                return
            finally:
                resp.release()

    async def _get_small(self, target: str, scopes: tuple[str, ...], what: str,
                         headers: dict[str, str] | None = None) -> tuple[bytes, Mapping[str, str], str]:
        """GET a document of at most MAX_MANIFEST_SIZE bytes: (body, headers, final URL).
        A connection lost while reading the body is retried like one lost before the answer."""
        attempt = 0
        while True:
            try:
                async with self.request("GET", target, scopes=scopes, what=what, headers=headers) as resp:
                    return await _read_limited(resp, MAX_MANIFEST_SIZE, what), resp.headers, str(resp.url)
            except NETWORK_ERRORS as e:
                if attempt + 1 >= self.retry.attempts:
                    raise RegistryError(f"{what}: {_reason(e)} (after {attempt + 1} attempts)") from None
                await asyncio.sleep(self.retry.delay(attempt))
                attempt += 1

    # -- manifests ---------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_MANIFESTS) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest, checked against its digest."""
        what = f"manifest {repo}:{reference}" if ":" not in reference else f"manifest {repo}@{reference}"
        body, headers, _ = await self._get_small(f"/v2/{repo}/manifests/{reference}", pull_scope(repo),
                                                 f"GET {what}", {"Accept": accept})
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        claimed = headers.get("Docker-Content-Digest")
        expected = reference if ":" in reference else claimed
        if expected:
            try:
                algorithm = parse_digest(expected)[0]
            except ContentError:
                raise RegistryError(f"{what}: registry sent an invalid digest {expected!r}") from None
            actual = digest_bytes(body, algorithm)
            if actual != expected:
                raise RegistryError(f"{what}: digest mismatch: expected {expected}, got {actual}")
        else:
            actual = digest_bytes(body)
        return FetchedManifest(body, media_type or _sniff_media_type(body), actual)

    async def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest a tag points at, or None when the manifest does not exist."""
        try:
            async with self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scopes=pull_scope(repo),
                                    what=f"HEAD manifest {repo}:{reference}",
                                    headers={"Accept": ACCEPT_MANIFESTS}) as resp:
                return resp.headers.get("Docker-Content-Digest")
        except NotFound:
            return None

    async def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        digest = digest_bytes(body)
        async with self.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=push_scope(repo),
                                what=f"PUT manifest {repo}:{reference}", ok=(201, 200, 202),
                                headers={"Content-Type": media_type}, body=lambda: body) as resp:
            claimed = resp.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(f"PUT manifest {repo}:{reference}: registry stored {claimed}, sent {digest}")
        return digest

    async def delete_manifest(self, repo: str, reference: str) -> None:
        async with self.request("DELETE", f"/v2/{repo}/manifests/{reference}",
                                scopes=(f"repository:{repo}:delete",), ok=(202, 200, 204),
                                what=f"DELETE manifest {repo}:{reference}"):
            pass

    async def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """All tags of a repository, following the Link pagination."""
        target = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []
        for _ in range(10_000):
            body, headers, base = await self._get_small(target, pull_scope(repo), f"tags of {repo}")
            link = headers.get("Link", "")
            try:
                page = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"tags of {repo}: the registry's answer is not a tag list") from None
            if not isinstance(page, list):
                raise RegistryError(f"tags of {repo}: the registry's answer is not a tag list")
            tags += [t for t in page if isinstance(t, str)]
            m = _LINK_NEXT.search(link)
            if not m:
                break
            target = str(URL(base).join(URL(m.group(1))))
        return tags

    # -- blobs -------------------------------------------------------------------------------

    async def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        try:
            async with self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=pull_scope(repo),
                                    what=f"HEAD blob {digest}") as resp:
                return resp.content_length if resp.content_length is not None else -1
        except NotFound:
            return None

    async def fetch_blob(self, repo: str, digest: str, size: int | None, store: ContentStore,
                         progress: Progress | None = None) -> bool:
        """Download a blob into the store, resuming a partial earlier download with HTTP Range.

        The partial download survives connection drops (retried here with backoff) and even the
        end of this call, so a later pull resumes it; bytes that do not hash to `digest` are
        discarded and reported, never published. False when another download published it first.
        """
        algorithm, hexpart = parse_digest(digest)
        ref = f"pull-{algorithm}-{hexpart[:64]}"
        lock = await _lock_ingest(store, ref, digest)
        if lock is None:
            return False  # another download published it meanwhile
        try:
            await self._fetch_locked(repo, digest, size, store, ref, progress)
            return True
        finally:
            os.close(lock)

    async def _fetch_locked(self, repo: str, digest: str, size: int | None, store: ContentStore, ref: str,
                            progress: Progress | None) -> None:
        writer = store.writer(digest, size, ref=ref)
        published = False
        try:
            if progress and writer.offset:
                progress(writer.offset)
            attempt = 0
            while True:
                try:
                    await self._download_into(repo, digest, writer, progress)
                    break
                except ContentError as e:  # more bytes than the descriptor's size: not worth resuming
                    writer.abort()
                    raise RegistryError(f"GET blob {digest} from {self.domain}/{repo}: {e}") from None
                except NETWORK_ERRORS as e:
                    if attempt + 1 >= self.retry.attempts:
                        raise RegistryError(f"GET blob {digest}: {_reason(e)} "
                                            f"(after {attempt + 1} attempts; a later pull resumes)") from None
                    await asyncio.sleep(self.retry.delay(attempt))
                    attempt += 1
            try:
                await asyncio.to_thread(writer.commit)
                published = True
            except DigestMismatch as e:
                raise RegistryError(f"GET blob {digest} from {self.domain}/{repo}: {e}") from None
            except ContentError as e:
                raise RegistryError(f"GET blob {digest}: {e}") from None
        finally:
            if not published:
                if writer.offset:
                    writer.close()  # keep the partial download for the next attempt
                else:
                    writer.abort()

    async def _download_into(self, repo: str, digest: str, writer: Any, progress: Progress | None) -> None:
        headers = {"Range": f"bytes={writer.offset}-"} if writer.offset else {}
        async with self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=pull_scope(repo),
                                what=f"GET blob {digest}", ok=(200, 206), headers=headers) as resp:
            if resp.status == 206 and not resp.headers.get("Content-Range", "").startswith(
                    f"bytes {writer.offset}-"):
                raise RegistryError(f"GET blob {digest}: registry answered a Range request with "
                                    f"{resp.headers.get('Content-Range')!r}")
            if resp.status == 200 and writer.offset:
                if progress:
                    progress(-writer.offset)
                writer.truncate()  # the registry ignored the Range header: start over
            buffer = bytearray()
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    buffer += chunk
                    if len(buffer) >= CHUNK:
                        full, buffer = buffer, bytearray()
                        await _write(writer, full, progress)
            finally:
                if buffer:  # keep what arrived before a drop, for the resume
                    await _write(writer, buffer, progress)

    async def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount; None when mounted, else the upload URL the registry opened instead."""
        async with self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}",
                                scopes=push_scope(repo, from_repo), ok=(201, 202),
                                what=f"mount {digest} from {from_repo}") as resp:
            if resp.status == 201:
                return None
            return self._location(resp)

    async def start_upload(self, repo: str) -> str:
        async with self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=push_scope(repo), ok=(202,),
                                what=f"start upload to {repo}") as resp:
            return self._location(resp)

    async def upload_blob(self, repo: str, digest: str, path: str, size: int, *, location: str | None = None,
                          chunk_size: int | None = None, progress: Progress | None = None) -> None:
        """Upload the file at `path`: one PUT (monolithic) or PATCH chunks of `chunk_size` and a PUT."""
        url = location or await self.start_upload(repo)
        scopes = push_scope(repo)
        offset = 0
        if chunk_size and size > chunk_size:
            while offset < size:
                length = min(chunk_size, size - offset)
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                           "Content-Range": f"{offset}-{offset + length - 1}"}
                async with self.request("PATCH", url, scopes=scopes, ok=(202,), retry=False, headers=headers,
                                        what=f"PATCH blob {digest}",
                                        body=_file_body(path, offset, length, progress)) as resp:
                    url = self._location(resp)
                offset += length
        put_url = str(URL(url).update_query(digest=digest))
        length = size - offset
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        async with self.request("PUT", put_url, scopes=scopes, ok=(201, 204), retry=False, headers=headers,
                                what=f"PUT blob {digest}",
                                body=_file_body(path, offset, length, progress) if length else None) as resp:
            claimed = resp.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(f"PUT blob {digest}: registry stored {claimed}")

    def _location(self, resp: aiohttp.ClientResponse) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{resp.method} {resp.url.path}: registry sent no Location")
        return str(resp.url.join(URL(location)))


async def _lock_ingest(store: ContentStore, ref: str, digest: str) -> int | None:
    """Lock the partial download `ref` against other downloads (threads or processes) of the same blob.

    Returns the locked descriptor, or None once the blob is in the store. The inode check makes
    sure the lock is on the file at the path now, not on one a finished writer renamed away.
    """
    path = os.path.join(store.root, "ingest", ref)
    while not store.has(digest):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    if not store.has(digest):
                        return fd
                    os.unlink(path)  # a leftover created by this loop after the blob was published
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return None


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise RegistryError(f"{what}: answer of {resp.content_length} bytes exceeds the {limit} byte limit")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > limit:
            raise RegistryError(f"{what}: answer exceeds the {limit} byte limit")
    return bytes(data)


async def _write(writer: Any, data: bytearray, progress: Progress | None) -> None:
    """Append to the writer in a thread (hashing releases the GIL). A cancelled caller still waits for
    the write to end, so the partial file and its running hash never disagree."""
    done = asyncio.ensure_future(asyncio.to_thread(writer.write, bytes(data)))
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        await done
        raise
    if progress:
        progress(len(data))


def _file_body(path: str, offset: int, length: int, progress: Progress | None) -> Callable[[], Any]:
    async def chunks() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            f.seek(offset)
            left = length
            while left > 0:
                data = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not data:
                    raise RegistryError(f"{path} is shorter than expected")
                left -= len(data)
                if progress:
                    progress(len(data))
                yield data
    return chunks


def _sniff_media_type(body: bytes) -> str:
    try:
        value = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, aiohttp.ClientConnectorError) and not isinstance(e, aiohttp.ClientSSLError):
        cause = os.strerror(e.errno) if e.errno else str(e.os_error)  # not aiohttp's "ssl:<SSLContext …>"
        return f"cannot connect to {e.host}:{e.port}: {cause}"
    text = str(e) or type(e).__name__
    return text.splitlines()[0]
