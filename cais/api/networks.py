"""/networks: docker's NetworkList, NetworkInspect, NetworkCreate, NetworkDelete, NetworkConnect,
NetworkDisconnect and NetworkPrune over the engine's NetworkService."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cais.api import schema, versions
from cais.api.errors import json_reply, read_json
from cais.api.routing import api_version, qfilters, route
from cais.engine.errors import InvalidParameter


def _networks(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app["engine"].networks


@route("GET", "/networks")
async def list_networks(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_networks(request).list, qfilters(request)))


@route("GET", "/networks/{id}")
async def inspect_network(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_networks(request).inspect, request.match_info["id"]))


@route("POST", "/networks/create")
async def create_network(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.NETWORK_CREATE)
    if isinstance(body, dict) and not versions.at_least(api_version(request), "1.47"):
        body.pop("EnableIPv4", None)  # API 1.47's field: every network of an older client has IPv4
    return json_reply(await asyncio.to_thread(_networks(request).create, body), status=201)


@route("DELETE", "/networks/{id}")
async def remove_network(request: web.Request) -> web.Response:
    await asyncio.to_thread(_networks(request).remove, request.match_info["id"])
    return web.Response(status=204)


@route("POST", "/networks/prune")
async def prune_networks(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_networks(request).prune, qfilters(request)))


def _container(body: object) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
        raise InvalidParameter("a Container is required")
    return body["Container"]


@route("POST", "/networks/{id}/connect")
async def connect_network(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.NETWORK_CONNECT)
    config = body.get("EndpointConfig") if isinstance(body, dict) else None
    if config is not None and not isinstance(config, dict):
        raise InvalidParameter("invalid EndpointConfig: expected an object")
    await asyncio.to_thread(_networks(request).connect, request.match_info["id"], _container(body), config)
    return web.Response(status=200)


@route("POST", "/networks/{id}/disconnect")
async def disconnect_network(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.NETWORK_DISCONNECT)
    await asyncio.to_thread(_networks(request).disconnect, request.match_info["id"], _container(body),
                            bool(body.get("Force")))
    return web.Response(status=200)
