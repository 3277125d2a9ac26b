"""Docker's stream framing: an 8-byte header (stream, 0, 0, 0, big-endian length), then the bytes.

The supervisor speaks it too, with stream 0 for stdin (an empty stdin frame closes stdin) and a
private CONTROL stream that carries a JSON object (the exit code) and never reaches a client.
"""

from __future__ import annotations

import asyncio
import struct

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
CONTROL = 0x80
HEADER = struct.Struct(">BxxxI")
MAX_FRAME = 16 << 20


def frame(stream: int, data: bytes) -> bytes:
    return HEADER.pack(stream, len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """One frame, or None at end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
        stream, length = HEADER.unpack(header)
        if length > MAX_FRAME:
            return None
        return stream, await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
