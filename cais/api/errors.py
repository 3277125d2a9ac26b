"""Errors as docker answers them: `{"message": ...}` with its status codes, never a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from cais.engine.errors import EngineError

log = logging.getLogger("cais.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(EngineError):
    status = 400


def json_reply(data: object, status: int = 200) -> web.Response:
    """JSON with exactly `application/json` (the docker CLI compares the header verbatim)."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def json_error(status: int, message: str) -> web.Response:
    return json_reply({"message": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as e:
        return json_error(e.status, str(e))
    except web.HTTPRequestEntityTooLarge as e:
        return json_error(413, e.text or "request body too large")
    except web.HTTPException as e:
        if e.status >= 400:
            reason = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            if e.status == 404 and e.reason == "Not Found":
                reason = "page not found"
            if e.status == 405:
                reason = f"method {request.method} is not allowed on {request.path}"
            return json_error(e.status, reason)
        raise
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as e:  # the daemon stays up and says what went wrong, in one line
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, f"{type(e).__name__}: {e}" if not str(e) else str(e))


async def read_json(request: web.Request, *, required: bool = False) -> dict:
    """The request body as a JSON object; malformed JSON or a non-object is a 400."""
    body = await request.read()
    if not body.strip():
        if required:
            raise BadRequest("request body is required")
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: [[[[… nested too deep
        raise BadRequest(f"invalid JSON: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("invalid JSON: expected an object")
    return value
