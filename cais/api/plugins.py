"""Plugin endpoints: cais has no managed plugins (its volume and network drivers are built in).

The list is empty, a named plugin is docker's 404, and installing one (privileges, pull,
create) is 501.
"""

from __future__ import annotations

from aiohttp import web

from cais.api.errors import json_reply
from cais.api.routing import qfilters, route
from cais.engine.errors import InvalidParameter, NotFound, Unsupported

FILTERS = ("capability", "enable")


@route("GET", "/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    for key, values in qfilters(request).items():
        if key not in FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
        if key == "enable" and any(v not in ("true", "false") for v in values):
            raise InvalidParameter(f"invalid filter 'enable={values[-1]}'")
    return json_reply([])


async def no_such_plugin(request: web.Request) -> web.Response:
    raise NotFound(f'plugin "{request.match_info["name"]}" not found')


async def no_plugins(request: web.Request) -> web.Response:
    raise Unsupported("plugins are not supported by cais")


route("GET", "/plugins/{name:.+}/json")(no_such_plugin)
route("DELETE", "/plugins/{name:.+}")(no_such_plugin)
for _action in ("enable", "disable", "upgrade", "push", "set"):
    route("POST", f"/plugins/{{name:.+}}/{_action}")(no_such_plugin)
route("GET", "/plugins/privileges")(no_plugins)
route("POST", "/plugins/pull")(no_plugins)
route("POST", "/plugins/create")(no_plugins)
