"""GET /distribution/{name}/json (docker-py's `images.get_registry_data`, `docker service create`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cais.api.errors import json_reply
from cais.api.images import _auth
from cais.api.routing import route


@route("GET", "/distribution/{name:.+}/json")
async def distribution_inspect(request: web.Request) -> web.Response:
    from cais.engine.distribution import inspect
    return json_reply(await asyncio.to_thread(inspect, request.match_info["name"], _auth(request)))
