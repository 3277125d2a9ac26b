"""GET /containers/{id}/attach/ws: attach over a WebSocket.

As dockerd does it: one message per chunk of output, never multiplexed (stdout and stderr share
the socket, so a client wanting them apart attaches twice); binary frames from API 1.28 on, text
before; from API 1.42 the stdin/stdout/stderr query flags choose the streams, before that all
three are attached. Messages from the client are the container's stdin (when it was created with
`OpenStdin`); a client that closes the socket closes stdin for a `StdinOnce` container. The
socket is closed when the container's output ends, on the detach keys, or when the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from cais.api import versions
from cais.api.errors import BadRequest
from cais.api.routing import api_version, qbool, qstr, route
from cais.api.streams import find_detach_keys, iterate_in_thread, parse_detach_keys
from cais.engine import frames
from cais.engine.logs import readable


@route("GET", "/containers/{id}/attach/ws")
async def attach_ws(request: web.Request) -> web.StreamResponse:
    engine = request.app["engine"]
    ref = request.match_info["id"]
    record = engine.get(ref)
    version = api_version(request)
    if versions.at_least(version, "1.42"):
        want = {name: qbool(request, name) for name in ("stdin", "stdout", "stderr")}
    else:
        want = {"stdin": True, "stdout": True, "stderr": True}
    try:
        detach_keys = parse_detach_keys(qstr(request, "detachKeys"))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    logs, stream = qbool(request, "logs"), qbool(request, "stream")
    if not (logs or stream):
        raise BadRequest("Bad parameters: you must choose at least one stream")
    ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
    if not ws.can_prepare(request).ok:
        raise BadRequest("a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket) is required")
    stdin = want["stdin"] and bool(record["Config"]["OpenStdin"])
    sock = None
    if stream:
        record, sock = await asyncio.to_thread(engine.attach, ref, stdin=stdin, stdout=want["stdout"],
                                               stderr=want["stderr"])
    try:
        await ws.prepare(request)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    binary = versions.at_least(version, "1.28")

    async def send(data: bytes) -> None:
        if binary:
            await ws.send_bytes(data)
        else:
            await ws.send_str(data.decode("utf-8", "replace"))

    try:
        if logs and readable(record):  # a batch at a time, 4 batches queued at most: a big log is not held
            batches = engine.logs(record["Id"], stdout=want["stdout"], stderr=want["stderr"], batches=True)
            async with contextlib.aclosing(iterate_in_thread(lambda: batches, queued=4)) as chunks:
                async for batch in chunks:  # closed at once if the client leaves: the reader stops
                    for _, _, data in batch:  # one message an entry, as dockerd
                        await send(data)
        if sock is not None:
            await _bridge(ws, sock, send, stdin=stdin, close_stdin=bool(record["Config"]["StdinOnce"]),
                          detach_keys=detach_keys)
    except (ConnectionError, RuntimeError):
        pass  # the client went away
    finally:
        if sock is not None:
            sock.close()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def _bridge(ws: web.WebSocketResponse, sock, send, *, stdin: bool, close_stdin: bool,  # type: ignore[no-untyped-def]
                  detach_keys: bytes) -> None:
    """Supervisor frames out as messages; messages in as stdin frames, until either side ends."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)

    async def output() -> None:
        while (got := await frames.read_frame(reader)) is not None:
            stream, data = got
            if stream != frames.CONTROL:
                await send(data)

    async def forward_input() -> None:
        matched = 0
        async for message in ws:
            if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not stdin:
                continue
            data = message.data if message.type == WSMsgType.BINARY else message.data.encode()
            matched, cut = find_detach_keys(data, detach_keys, matched)
            if cut is not None:
                if cut:
                    writer.write(frames.frame(frames.STDIN, data[:cut]))
                    await writer.drain()
                return  # detached: the container keeps its stdin open
            writer.write(frames.frame(frames.STDIN, data))
            await writer.drain()
        if stdin and close_stdin:  # the client closed the socket: that is the end of stdin
            writer.write(frames.frame(frames.STDIN, b""))
            await writer.drain()

    tasks = {asyncio.ensure_future(output()), asyncio.ensure_future(forward_input())}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            writer.close()
