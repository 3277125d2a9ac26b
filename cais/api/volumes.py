"""/volumes: list, create, inspect, remove and prune volumes (docker's VolumeList … VolumePrune)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cais.api import schema, versions
from cais.api.errors import json_reply, read_json
from cais.api.routing import api_version, qbool, qfilters, route


def _volumes(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app["engine"].volumes


@route("GET", "/volumes")
async def list_volumes(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_volumes(request).list, qfilters(request)))


@route("POST", "/volumes/create")
async def create_volume(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.VOLUME_CREATE)
    return json_reply(await asyncio.to_thread(_volumes(request).create, body), status=201)


@route("GET", "/volumes/{name}")
async def inspect_volume(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_volumes(request).inspect, request.match_info["name"]))


@route("DELETE", "/volumes/{name}")
async def remove_volume(request: web.Request) -> web.Response:
    await asyncio.to_thread(_volumes(request).remove, request.match_info["name"], qbool(request, "force"))
    return web.Response(status=204)


@route("POST", "/volumes/prune")
async def prune_volumes(request: web.Request) -> web.Response:
    filters = qfilters(request)
    if versions.parse(api_version(request)) < (1, 42):  # type: ignore[operator]
        filters.setdefault("all", ["true"])  # before 1.42 prune considered every unused volume
    return json_reply(await asyncio.to_thread(_volumes(request).prune, filters))
