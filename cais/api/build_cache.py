"""POST /build/prune (`docker builder prune`, and part of `docker system prune`).

cais's builder is docker's classic one: its cache is the intermediate images of earlier builds,
kept alive by the images built from them and removed with them (`image prune`, `rmi`). There
is no BuildKit cache apart from images, so this prunes nothing and says so in docker's shape.
"""

from __future__ import annotations

from aiohttp import web

from cais.api.errors import json_reply
from cais.api.routing import qfilters, qint, route


@route("POST", "/build/prune")
async def build_prune(request: web.Request) -> web.Response:
    qfilters(request)  # malformed filters are a 400; unknown keys are ignored, as by dockerd
    for name in ("reserved-space", "max-used-space", "min-free-space", "keep-storage"):
        qint(request, name)  # malformed numbers are a 400, as with dockerd
    return json_reply({"CachesDeleted": [], "SpaceReclaimed": 0})
