"""/containers/{id}/exec and /exec/{id}/…: create, start (hijacked), resize, inspect."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cais.api import schema
from cais.api.errors import BadRequest, json_reply, read_json
from cais.api.hijack import hijack
from cais.api.routing import qint, route
from cais.api.streams import bridge, parse_detach_keys
from cais.engine.errors import EngineError
from cais.engine.frames import STDOUT, frame


@route("POST", "/containers/{id}/exec")
async def create(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request, required=True), schema.EXEC_CREATE)
    result = await asyncio.to_thread(request.app["engine"].exec_create, request.match_info["id"], body)
    return json_reply(result, status=201)


@route("POST", "/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    body = schema.check(await read_json(request), schema.EXEC_START)
    exec_id = request.match_info["id"]
    detach = bool(body.get("Detach"))
    ex = engine.exec_inspect(exec_id)
    tty = bool(body.get("Tty")) or ex["ProcessConfig"]["tty"]
    if detach:
        _, sock = await asyncio.to_thread(engine.exec_start, exec_id, detach=True)
        sock.close()
        return web.Response(status=200)
    try:
        detach_keys = parse_detach_keys(ex.get("DetachKeys"))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    engine.exec_check(exec_id)
    # the upgrade answer goes out before the process starts: a client that reads the headers
    # through a buffer (docker-py) must not swallow the first output with them
    h = await hijack(request, tty=tty)
    await h.response.drain()
    try:
        _, sock = await asyncio.to_thread(engine.exec_start, exec_id)
    except EngineError as e:  # as dockerd: the words on stdout, the exit code (126) in the exec's inspect
        message = str(e).encode() + b"\r\n"
        await h.write(message if tty else frame(STDOUT, message))
        return h.response
    await bridge(h, sock, tty=tty, close_stdin_at_eof=True, detach_keys=detach_keys if ex["OpenStdin"] else None,
                 on_exit=lambda code: engine.exec_finished(exec_id, code))
    return h.response


@route("POST", "/exec/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    engine = request.app["engine"]
    ex = engine.exec_inspect(request.match_info["id"])
    await asyncio.to_thread(engine.resize, ex["ContainerID"], qint(request, "h", 0) or 0, qint(request, "w", 0) or 0,
                            request.match_info["id"])
    return web.Response(status=201)


@route("GET", "/exec/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return json_reply(request.app["engine"].exec_inspect(request.match_info["id"]))
