"""/networks until their drivers exist: the built-in `none` and `host` networks.

Containers run with `--network none` semantics (`host` shares the host's namespace); creating
networks is answered 501 with a clear message, never a silent success.
"""

from __future__ import annotations

from aiohttp import web

from cais.api.errors import json_reply
from cais.api.routing import route
from cais.engine.errors import NotFound, Unsupported

_NETWORKS = {
    name: {"Name": name, "Id": ident, "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": name,
           "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
           "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
           "Containers": {}, "Options": {}, "Labels": {}}
    for name, ident in (("none", "6e6f6e65" * 8), ("host", "686f7374" * 8))
}


@route("GET", "/networks")
async def list_networks(request: web.Request) -> web.Response:
    return json_reply(list(_NETWORKS.values()))


@route("GET", "/networks/{id}")
async def inspect_network(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    for net in _NETWORKS.values():
        if ref in (net["Name"], net["Id"]) or (len(ref) >= 3 and net["Id"].startswith(ref)):
            return json_reply(net)
    raise NotFound(f"network {ref} not found")


@route("POST", "/networks/create")
async def create_network(request: web.Request) -> web.Response:
    raise Unsupported("creating networks is not supported yet: containers use --network none or host")

