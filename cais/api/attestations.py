"""GET /images/{name}/attestations (API 1.56): 501, as from dockerd's graphdriver image store.

cais does not read attestation manifests (yet); a missing image is still a 404 and a malformed
platform a 400, checked first as dockerd does.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from cais.api.routing import route
from cais.engine.errors import InvalidParameter, Unsupported


@route("GET", "/images/{name:.+}/attestations")
async def attestations(request: web.Request) -> web.Response:
    await asyncio.to_thread(request.app["engine"].images.inspect, request.match_info["name"])
    platforms = request.query.getall("platform", [])
    if len(platforms) > 1:
        raise InvalidParameter("only one platform may be given")
    for text in platforms:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            raise InvalidParameter(f"invalid platform: {text!r}")
    raise Unsupported("the image store does not support attestations")
