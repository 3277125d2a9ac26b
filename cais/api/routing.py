"""Routes served with and without docker's `/vX.Y` prefix, and typed query parameters."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from cais.api import versions
from cais.api.errors import BadRequest, Handler, json_error

ROUTES: list[tuple[str, str, Handler]] = []


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD PATH and METHOD /vX.Y/PATH (collected by the resource modules)."""
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, path, handler))
        return handler
    return register


def install(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{api_version:[^/]+}" + path, handler)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    asked = request.match_info.get("api_version")
    if asked is not None:
        problem = versions.check(asked)
        if problem:
            return json_error(400, problem)
    request["api_version"] = asked or versions.API_VERSION
    return await handler(request)


def api_version(request: web.Request) -> str:
    return request.get("api_version", versions.API_VERSION)


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"invalid value for {name}: {value!r} is not an integer") from None


def qstr(request: web.Request, name: str, default: str | None = None) -> str | None:
    return request.query.get(name, default)


def qfilters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` query parameter: {"key": ["v", …]} or the legacy {"key": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(f"invalid filters: {raw!r}") from None
    if not isinstance(value, dict):
        raise BadRequest("invalid filters: expected an object")
    out: dict[str, list[str]] = {}
    for key, vals in value.items():
        if isinstance(vals, dict):
            out[key] = [k for k, on in vals.items() if on]
        elif isinstance(vals, list):
            out[key] = [str(v) for v in vals]
        elif isinstance(vals, str):
            out[key] = [vals]
        else:
            raise BadRequest(f"invalid filter {key!r}")
    return out
