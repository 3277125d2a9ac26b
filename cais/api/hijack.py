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


class _StdinParser:
    """Feeds the bytes that follow the upgrade into a StreamReader (aiohttp's payload-parser protocol)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        if not self.reader.at_eof():
            self.reader.feed_eof()


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
    protocol = request.protocol
    if upgrade and protocol is not None:
        stdin = asyncio.StreamReader(limit=1 << 20)
        parser = _StdinParser(stdin)
        protocol.set_parser(parser)  # type: ignore[arg-type]

        def eof_received() -> bool:
            parser.feed_eof()
            return True  # keep the transport open for output

        protocol.eof_received = eof_received  # type: ignore[method-assign]
    return Hijacked(response, stdin)
