"""Swarm endpoints: cais is never part of a swarm, and answers as a dockerd outside one does.

Everything that needs a manager (swarm inspect and update, the unlock key, nodes, services,
tasks, secrets, configs, cluster volumes) is 503 with dockerd's "not a swarm manager" message —
docker-py's `client.swarm` and the docker CLI's `docker node ls` expect exactly that; leaving or
unlocking is 503 "not part of a swarm"; creating or joining a swarm is 501: cais has no swarm mode.
"""

from __future__ import annotations

from aiohttp import web

from cais.api.routing import route
from cais.engine.errors import EngineError, Unsupported


class Unavailable(EngineError):
    status = 503


NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
               "node to swarm and try again.")
NO_SWARM = "This node is not part of a swarm"

MANAGER_ONLY = [
    ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
    ("GET", "/nodes"), ("GET", "/nodes/{id}"), ("DELETE", "/nodes/{id}"), ("POST", "/nodes/{id}/update"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/{id}"), ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"), ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/logs"),
    *[(method, f"/{kind}{path}") for kind in ("secrets", "configs") for method, path in (
        ("GET", ""), ("POST", "/create"), ("GET", "/{id}"), ("DELETE", "/{id}"), ("POST", "/{id}/update"))],
]


async def not_manager(request: web.Request) -> web.Response:
    raise Unavailable(NOT_MANAGER)


async def no_swarm(request: web.Request) -> web.Response:
    raise Unavailable(NO_SWARM)


async def no_swarm_mode(request: web.Request) -> web.Response:
    raise Unsupported("swarm mode is not supported by cais")


@route("PUT", "/volumes/{name}")
async def update_cluster_volume(request: web.Request) -> web.Response:
    raise Unavailable("volume update only valid for cluster volumes, but swarm is unavailable")


for _method, _path in MANAGER_ONLY:
    route(_method, _path)(not_manager)
route("POST", "/swarm/leave")(no_swarm)
route("POST", "/swarm/unlock")(no_swarm)
route("POST", "/swarm/init")(no_swarm_mode)
route("POST", "/swarm/join")(no_swarm_mode)
