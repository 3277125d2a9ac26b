"""The distribution API (OCI distribution spec v1.1, Docker Registry HTTP API v2) as an aiohttp app.

Every path under /v2/ goes through one dispatcher that matches it against the spec's grammar
(repository names, tags and digests are validated before anything touches the disk); errors are
the spec's JSON `{"errors": [{"code", "message", "detail"}]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cais.image.content import ContentError, DigestMismatch, digest_bytes, parse_digest
from cais.image.manifest import (
    FOREIGN_LAYER_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    Index,
    ManifestError,
    parse_manifest,
)
from cais.registry.server.htpasswd import Htpasswd
from cais.registry.server.storage import NAME_MAX, RegistryStorage, valid_name

log = logging.getLogger(__name__)

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_NAME = r"(?P<name>[a-z0-9][a-z0-9._/-]*?)"
_DIGEST = r"[a-z0-9]+:[A-Za-z0-9=_-]+"
ROUTES = [
    (re.compile(r"^$"), "base"),
    (re.compile(r"^_catalog$"), "catalog"),
    (re.compile(rf"^{_NAME}/tags/list$"), "tags"),
    (re.compile(rf"^{_NAME}/manifests/(?P<reference>[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}|{_DIGEST})$"), "manifest"),
    (re.compile(rf"^{_NAME}/blobs/uploads/$"), "upload_start"),
    (re.compile(rf"^{_NAME}/blobs/uploads/(?P<upload>[^/]+)$"), "upload"),
    (re.compile(rf"^{_NAME}/blobs/(?P<digest>{_DIGEST})$"), "blob"),
    (re.compile(rf"^{_NAME}/referrers/(?P<digest>{_DIGEST})$"), "referrers"),
]
UPLOAD_TTL = 3600.0  # abandoned upload sessions are removed after an hour
SWEEP_INTERVAL = 300.0
PAGE_MAX = 1000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return web.json_response({"errors": [error]}, status=self.status, headers={**API_VERSION, **self.headers})


class RegistryApp:
    def __init__(self, root: str, htpasswd: str | None = None, upload_ttl: float = UPLOAD_TTL,
                 realm: str = "cais-registry") -> None:
        self.storage = RegistryStorage(root)
        self.htpasswd = Htpasswd(htpasswd) if htpasswd else None
        self.upload_ttl = upload_ttl
        self.realm = realm
        self._upload_locks: dict[str, asyncio.Lock] = {}

    def make(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_MANIFEST_SIZE)
        app.router.add_route("*", "/v2", self._dispatch)
        app.router.add_route("*", "/v2/{tail:.*}", self._dispatch)
        app.cleanup_ctx.append(self._sweeper)
        return app

    async def _sweeper(self, _: web.Application) -> Any:
        async def loop() -> None:
            while True:
                removed = await asyncio.to_thread(self.storage.sweep_uploads, self.upload_ttl)
                if removed:
                    log.info("removed %d abandoned upload(s)", removed)
                await asyncio.sleep(min(SWEEP_INTERVAL, max(self.upload_ttl / 2, 1.0)))
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            if self.htpasswd is not None and await self.htpasswd.check(request.headers.get("Authorization")) is None:
                raise ApiError(401, "UNAUTHORIZED", "authentication required",
                               headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'})
            response = await handler(request)
        except ApiError as e:
            return e.response()
        except web.HTTPException:
            raise
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "UNKNOWN", "internal server error").response()
        response.headers.update(API_VERSION)
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        for pattern, kind in ROUTES:
            m = pattern.match(tail)
            if not m:
                continue
            params = m.groupdict()
            if "name" in params and not valid_name(params["name"]):
                raise ApiError(400, "NAME_INVALID", "invalid repository name",
                               {"name": params["name"][:NAME_MAX]})
            method = "get" if request.method == "HEAD" else request.method.lower()
            handler = getattr(self, f"{method}_{kind}", None)
            if handler is None:
                raise ApiError(405, "UNSUPPORTED", f"{request.method} is not supported here")
            return await handler(request, **params)
        raise ApiError(404, "NOT_FOUND", "no such endpoint")

    # -- base, catalog, tags -----------------------------------------------------------------

    async def get_base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def get_catalog(self, request: web.Request) -> web.Response:
        names = await asyncio.to_thread(self.storage.repositories)
        page, link = _paginate(request, names, "/v2/_catalog")
        return web.json_response({"repositories": page}, headers=link)

    async def get_tags(self, request: web.Request, name: str) -> web.Response:
        if not self.storage.repository_exists(name):
            raise ApiError(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name})
        page, link = _paginate(request, self.storage.tags(name), f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": page}, headers=link)

    # -- blobs -------------------------------------------------------------------------------

    async def get_blob(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        _check_digest(digest)
        if not self.storage.has_blob(name, digest):
            raise ApiError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"',
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            size = self.storage.content.size(digest)
            return web.Response(headers={**headers, "Content-Length": str(size)})
        return web.FileResponse(self.storage.content.path(digest), headers=headers)

    async def delete_blob(self, request: web.Request, name: str, digest: str) -> web.Response:
        _check_digest(digest)
        if not self.storage.unlink_blob(name, digest):
            raise ApiError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        return web.Response(status=202)

    # -- uploads -----------------------------------------------------------------------------

    async def post_upload_start(self, request: web.Request, name: str) -> web.Response:
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source:
            _check_digest(mount)
            if valid_name(source) and self.storage.has_blob(source, mount):
                self.storage.link_blob(name, mount)
                return _created(f"/v2/{name}/blobs/{mount}", mount)
        digest = request.query.get("digest")
        if digest is not None:
            _check_digest(digest)
        upload_id = self.storage.new_upload(name)
        if digest is not None:  # monolithic upload in the POST itself
            await self._append(request, upload_id, None)
            return await self._finish(name, upload_id, digest)
        return _accepted(name, upload_id, 0)

    async def get_upload(self, request: web.Request, name: str, upload: str) -> web.Response:
        self._session(name, upload)
        return _accepted(name, upload, self.storage.upload_size(upload), status=204)

    async def patch_upload(self, request: web.Request, name: str, upload: str) -> web.Response:
        self._session(name, upload)
        async with self._lock(upload):
            size = await self._append(request, upload, request.headers.get("Content-Range"))
        return _accepted(name, upload, size)

    async def put_upload(self, request: web.Request, name: str, upload: str) -> web.Response:
        self._session(name, upload)
        digest = request.query.get("digest", "")
        _check_digest(digest)
        async with self._lock(upload):
            if request.can_read_body:
                await self._append(request, upload, request.headers.get("Content-Range"))
            response = await self._finish(name, upload, digest)
        self._upload_locks.pop(upload, None)
        return response

    async def delete_upload(self, request: web.Request, name: str, upload: str) -> web.Response:
        self._session(name, upload)
        self.storage.cancel_upload(upload)
        return web.Response(status=204)

    def _session(self, name: str, upload: str) -> None:
        if self.storage.upload_repository(upload) != name:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload[:64]})

    def _lock(self, upload: str) -> asyncio.Lock:
        return self._upload_locks.setdefault(upload, asyncio.Lock())

    async def _append(self, request: web.Request, upload: str, content_range: str | None) -> int:
        size = self.storage.upload_size(upload)
        if content_range:
            m = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$", content_range.strip())
            if not m or int(m.group(1)) != size or int(m.group(2)) < int(m.group(1)):
                raise ApiError(416, "BLOB_UPLOAD_INVALID", f"Content-Range {content_range!r} does not continue "
                               f"the upload at offset {size}",
                               headers={"Range": f"0-{max(size - 1, 0)}"})
        with open(self.storage.upload_path(upload), "ab") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                f.write(chunk)
            return f.tell()

    async def _finish(self, name: str, upload: str, digest: str) -> web.Response:
        try:
            await asyncio.to_thread(self.storage.finish_upload, upload, digest)
        except DigestMismatch as e:
            raise ApiError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                           {"digest": digest, "error": str(e)}) from None
        except ContentError as e:
            raise ApiError(400, "BLOB_UPLOAD_INVALID", str(e)) from None
        self.storage.link_blob(name, digest)
        return _created(f"/v2/{name}/blobs/{digest}", digest)

    # -- manifests ---------------------------------------------------------------------------

    def _resolve(self, name: str, reference: str) -> tuple[str, str]:
        digest = reference if ":" in reference else self.storage.resolve(name, reference)
        media_type = self.storage.manifest_type(name, digest) if digest else None
        if digest is None or media_type is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown to registry",
                           {"name": name, "reference": reference})
        return digest, media_type

    async def get_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        if ":" in reference:
            _check_digest(reference)
        digest, media_type = self._resolve(name, reference)
        body = self.storage.content.read(digest)
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"', "Content-Type": media_type}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(body))})
        return web.Response(body=body, headers=headers)

    async def put_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_MANIFEST_SIZE:
            raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST_SIZE} bytes")
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > MAX_MANIFEST_SIZE:
                raise ApiError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST_SIZE} bytes")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            parsed = parse_manifest(bytes(body), content_type)
        except ManifestError as e:
            raise ApiError(400, "MANIFEST_INVALID", str(e)) from None
        digest = digest_bytes(bytes(body))
        if ":" in reference:
            _check_digest(reference)
            algorithm = parse_digest(reference)[0]
            if digest_bytes(bytes(body), algorithm) != reference:
                raise ApiError(400, "DIGEST_INVALID", "manifest does not match the digest in the URL",
                               {"digest": reference})
            digest = reference
        self._check_references(name, parsed)
        self.storage.put_manifest(name, bytes(body), digest, parsed.media_type)
        headers = {}
        subject = getattr(parsed, "subject", None)
        if subject is not None:
            self.storage.add_referrer(name, subject.digest, digest)
            headers["OCI-Subject"] = subject.digest
        if ":" not in reference:
            self.storage.tag(name, reference, digest)
        response = _created(f"/v2/{name}/manifests/{digest}", digest)
        response.headers.update(headers)
        return response

    def _check_references(self, name: str, parsed: Any) -> None:
        if isinstance(parsed, Index):
            missing = [d.digest for d in parsed.manifests if self.storage.manifest_type(name, d.digest) is None]
        else:
            missing = [d.digest for d in (parsed.config, *parsed.layers)
                       if not (d.urls and d.media_type in FOREIGN_LAYER_TYPES)
                       and not self.storage.has_blob(name, d.digest)]
        if missing:
            raise ApiError(400, "MANIFEST_BLOB_UNKNOWN", "manifest references a blob or manifest unknown "
                           "to this repository", {"digest": missing[0]})

    async def delete_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        if ":" in reference:
            _check_digest(reference)
            if not self.storage.delete_manifest(name, reference):
                raise ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown to registry", {"digest": reference})
        elif not self.storage.untag(name, reference):
            raise ApiError(404, "MANIFEST_UNKNOWN", "tag unknown to registry", {"tag": reference})
        return web.Response(status=202)

    # -- referrers ---------------------------------------------------------------------------

    async def get_referrers(self, request: web.Request, name: str, digest: str) -> web.Response:
        _check_digest(digest)
        wanted = request.query.get("artifactType")
        manifests = []
        for ref in self.storage.referrers(name, digest):
            body = self.storage.content.read(ref)
            obj = json.loads(body)
            artifact_type = obj.get("artifactType") or (obj.get("config") or {}).get("mediaType")
            if wanted and artifact_type != wanted:
                continue
            entry = {"mediaType": obj.get("mediaType") or self.storage.manifest_type(name, ref),
                     "digest": ref, "size": len(body)}
            if artifact_type:
                entry["artifactType"] = artifact_type
            if obj.get("annotations"):
                entry["annotations"] = obj["annotations"]
            manifests.append(entry)
        headers = {"Content-Type": OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        return web.Response(body=body, headers=headers)


def _check_digest(digest: str) -> None:
    try:
        parse_digest(digest)
    except ContentError:
        raise ApiError(400, "DIGEST_INVALID", "invalid digest", {"digest": digest[:200]}) from None


def _created(location: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={"Location": location, "Docker-Content-Digest": digest,
                                             "Content-Length": "0"})


def _accepted(name: str, upload: str, size: int, status: int = 202) -> web.Response:
    return web.Response(status=status, headers={
        "Location": f"/v2/{name}/blobs/uploads/{upload}", "Docker-Upload-UUID": upload,
        "Range": f"0-{max(size - 1, 0)}", "Content-Length": "0"})


def _paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    try:
        n = int(request.query.get("n", PAGE_MAX))
    except ValueError:
        raise ApiError(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested") from None
    if n < 0:
        raise ApiError(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
    n = min(n, PAGE_MAX)
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    page = items[:n]
    headers = {}
    if len(items) > n and page:
        headers["Link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
    return page, headers


def make_app(root: str, htpasswd: str | None = None, upload_ttl: float = UPLOAD_TTL) -> web.Application:
    return RegistryApp(root, htpasswd, upload_ttl).make()
