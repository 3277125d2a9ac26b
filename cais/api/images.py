"""/images/…, /commit and /build: the image store over the Docker Engine API."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

from aiohttp import web

from cais.api import versions
from cais.api.containers import _BodyReader, _send_tar
from cais.api.errors import BadRequest, json_reply
from cais.api.routing import api_version, qbool, qfilters, qint, qstr, route
from cais.api.streams import iterate_in_thread


def _images(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app["engine"].images


def _auth(request: web.Request) -> dict:
    header = request.headers.get("X-Registry-Auth")
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))
        return value if isinstance(value, dict) else {}
    except (ValueError, RecursionError):
        return {}


async def _progress(request: web.Request, factory) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    """A JSON-lines progress stream (pull, push, load, import, build); errors become errorDetail lines."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    started = False
    stop = threading.Event()
    try:
        async for message in iterate_in_thread(factory, stop):
            if not started:
                await response.prepare(request)
                started = True
            await response.write(json.dumps(message).encode() + b"\r\n")
    except (ConnectionError, RuntimeError):
        pass
    except Exception as e:
        if not started:
            raise
        await response.write(json.dumps({"errorDetail": {"message": str(e)}, "error": str(e)}).encode() + b"\r\n")
    finally:
        stop.set()
    if not started:
        await response.prepare(request)
    return response


def for_version(image: dict, version: str) -> dict:
    """An image summary or inspect as dockerd answers at VERSION: API 1.44 dropped VirtualSize.

    API 1.45 also dropped Container and ContainerConfig; cais keeps serving them, because
    docker-compose 1.29 (Debian's) reads image["ContainerConfig"] when it recreates a service
    and fails with a KeyError against dockerd 25 and later."""
    if versions.at_least(version, "1.44"):
        image.pop("VirtualSize", None)
    return image


@route("GET", "/images/json")
async def list_images(request: web.Request) -> web.Response:
    images = await asyncio.to_thread(_images(request).list, all=qbool(request, "all"), filters=qfilters(request))
    return json_reply([for_version(image, api_version(request)) for image in images])


@route("GET", "/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.Response:
    image = await asyncio.to_thread(_images(request).inspect, request.match_info["name"])
    return json_reply(for_version(image, api_version(request)))


@route("GET", "/images/{name:.+}/history")
async def history(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_images(request).history, request.match_info["name"]))


@route("POST", "/images/{name:.+}/tag")
async def tag(request: web.Request) -> web.Response:
    repo = qstr(request, "repo")
    if not repo:
        raise BadRequest("repository name is required")
    await asyncio.to_thread(_images(request).tag, request.match_info["name"], repo, qstr(request, "tag") or "")
    return web.Response(status=201)


@route("DELETE", "/images/{name:.+}")
async def remove(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_images(request).remove, request.match_info["name"],
                                                     force=qbool(request, "force"), prune=not qbool(request, "noprune")))


@route("POST", "/images/prune")
async def prune(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_images(request).prune, qfilters(request)))


@route("GET", "/images/{name:.+}/get")
async def save_one(request: web.Request) -> web.StreamResponse:
    chunks = await asyncio.to_thread(_images(request).save, [request.match_info["name"]])
    return await _send_tar(request, chunks)


@route("GET", "/images/get")
async def save(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise BadRequest("no image names given")
    chunks = await asyncio.to_thread(_images(request).save, names)
    return await _send_tar(request, chunks)


@route("POST", "/images/load")
async def load(request: web.Request) -> web.StreamResponse:
    body = _BodyReader(request, asyncio.get_running_loop())
    quiet = qbool(request, "quiet")
    return await _progress(request, lambda: _images(request).load(body, quiet=quiet))


@route("POST", "/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    images = _images(request)
    source = qstr(request, "fromSrc")
    if source is not None:
        if source != "-":
            raise BadRequest("importing from a URL is not supported; send the tarball in the body (fromSrc=-)")
        body = _BodyReader(request, asyncio.get_running_loop())
        changes = request.query.getall("changes", [])
        return await _progress(request, lambda: images.import_(body, qstr(request, "repo") or "", qstr(request, "tag")
                                                               or "", changes=changes,
                                                               message=qstr(request, "message") or ""))
    name = qstr(request, "fromImage")
    if not name:
        raise BadRequest("fromImage or fromSrc is required")
    auth = _auth(request)
    platform = qstr(request, "platform") or ""
    return await _progress(request, lambda: images.pull(name, qstr(request, "tag") or "", auth=auth,
                                                        platform=platform))


@route("POST", "/images/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    auth = _auth(request)
    name, tag_ = request.match_info["name"], qstr(request, "tag") or ""
    return await _progress(request, lambda: _images(request).push(name, tag_, auth=auth))


@route("GET", "/images/search")
async def search(request: web.Request) -> web.Response:
    from cais.engine.search import search as search_registry
    term = qstr(request, "term")
    if not term:
        raise BadRequest("term is required")
    return json_reply(await asyncio.to_thread(search_registry, term, qint(request, "limit"), qfilters(request),
                                              _auth(request)))


@route("POST", "/commit")
async def commit(request: web.Request) -> web.Response:
    from cais.api import schema
    from cais.api.errors import read_json
    body = schema.check(await read_json(request), schema.COMMIT)
    container = qstr(request, "container")
    if not container:
        raise BadRequest("container is required")
    result = await asyncio.to_thread(
        _images(request).commit, container, repo=qstr(request, "repo") or "", tag=qstr(request, "tag") or "",
        comment=qstr(request, "comment") or "", author=qstr(request, "author") or "",
        changes=request.query.getall("changes", []), pause=qbool(request, "pause", True), config=body)
    return json_reply(result, status=201)


@route("POST", "/build")
async def build(request: web.Request) -> web.StreamResponse:
    body = _BodyReader(request, asyncio.get_running_loop())
    options = dict(request.query)
    options["t"] = request.query.getall("t", [])
    return await _progress(request, lambda: _images(request).build(body, options, auth=_auth(request)))
