"""Hijacked connections (attach, exec start): HTTP upgraded to a raw bidirectional byte stream.

Docker clients send `Connection: Upgrade` / `Upgrade: tcp`; the answer is `101 UPGRADED` and the
socket then carries stdin one way and output the other way — framed with docker's 8-byte header
(stream, 0, 0, 0, big-endian length) when the process has no TTY, raw otherwise. A client may
half-close its side when stdin ends: that ends stdin, not the output stream.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from cais.api import versions
from cais.api.routing import api_version

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


class _RawResponse(web.StreamResponse):
    _length_check = False  # neither Content-Length nor chunked: the body is the raw stream


class _HijackedProtocol(asyncio.Protocol):
    """Takes the transport over from aiohttp after the upgrade: bytes in are stdin; a half-close
    ends stdin without closing the connection; flow control and loss still reach aiohttp."""

    def __init__(self, inner: asyncio.BaseProtocol, reader: asyncio.StreamReader) -> None:
        self.inner = inner
        self.reader = reader

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        if not self.reader.at_eof():
            self.reader.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reader.at_eof():
            self.reader.feed_eof()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Hijacked:
    def __init__(self, response: web.StreamResponse, stdin: asyncio.StreamReader | None) -> None:
        self.response = response
        self.stdin = stdin
        self.closed = False

    async def write(self, data: bytes) -> bool:
        """Send bytes to the client; False once it has gone away."""
        if self.closed:
            return False
        try:
            await self.response.write(data)
            return True
        except (ConnectionError, RuntimeError, OSError):
            self.closed = True
            return False


async def hijack(request: web.Request, *, tty: bool) -> Hijacked:
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    response = _RawResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
    multiplexed = not tty and versions.at_least(api_version(request), "1.42")
    response.content_type = MULTIPLEXED if multiplexed else RAW
    if upgrade:
        response.headers["Connection"] = "Upgrade"
        response.headers["Upgrade"] = "tcp"
    response.force_close()
    await response.prepare(request)
    stdin = None
    transport = request.transport
    if upgrade and transport is not None and request.protocol is not None:
        stdin = asyncio.StreamReader(limit=1 << 20)
        tail = bytes(request.protocol._message_tail)  # bytes that came right after the headers
        request.protocol._message_tail = b""
        if tail:
            stdin.feed_data(tail)
        transport.set_protocol(_HijackedProtocol(request.protocol, stdin))
    return Hijacked(response, stdin)
