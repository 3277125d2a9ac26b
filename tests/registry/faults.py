"""A small fault-injecting HTTP proxy to put in front of a real registry (loopback only).

Requests are forwarded unchanged (Host included, so the registry's Location headers point back
at the proxy) unless a `Fault` matches: then the proxy answers with an error status, cuts the
connection in the middle of the body, or flips a byte of it. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


@dataclass
class Fault:
    path: str  # a substring of the request path
    action: str  # "status", "drop" (cut the body half way), "corrupt" (flip a byte) or "redirect" (307)
    status: int = 500
    times: int = 1  # how many matching requests it affects
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    to: str = ""  # for "redirect": the host:port to send the client to, same path


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    status: int = 0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.host = ""

    def _match(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.path in request.path and fault.method in (None, request.method):
                fault.times -= 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path_qs, request.headers.get("Range"))
        self.seen.append(seen)
        fault = self._match(request)
        if fault is not None and fault.action == "redirect":
            seen.status = 307
            return web.Response(status=307, headers={"Location": f"http://{fault.to}{request.path_qs}"})
        if fault is not None and fault.action == "status":
            seen.status = fault.status
            body = json.dumps({"errors": [{"code": "INJECTED", "message": f"injected {fault.status}"}]})
            return web.Response(status=fault.status, text=body, content_type="application/json",
                                headers=fault.headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = await request.read() if request.can_read_body else None
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
                request.method, f"http://{self.upstream}{request.path_qs}", headers=headers, data=data,
                allow_redirects=False) as upstream:
            body = await upstream.read()
            seen.status = upstream.status
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if fault is not None and fault.action == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        response = web.StreamResponse(status=upstream.status, headers=out_headers)
        response.content_length = len(body)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if fault is not None and fault.action == "drop" and len(body) > 1:
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write(body)
        await response.write_eof()
        return response


@contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on a free loopback port from a thread of its own; yield 'HOST:PORT'."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host = f"127.0.0.1:{sock.getsockname()[1]}"
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield host
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sock.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a FaultProxy for `upstream` (host:port, plain HTTP) on a free loopback port."""
    proxy = FaultProxy(upstream)
    app = web.Application(client_max_size=1 << 30)  # it buffers uploads whole
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    with serve_in_thread(app) as host:
        proxy.host = host
        yield proxy
