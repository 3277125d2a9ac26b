"""Docker's stream framing: an 8-byte header (stream, 0, 0, 0, big-endian length), then the bytes.

The supervisor speaks it too, with stream 0 for stdin (an empty stdin frame closes stdin) and a
private CONTROL stream that carries a JSON object (the exit code) and never reaches a client.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:  # asyncio: ~15 ms of the daemonless CLI's start, which uses the framing only
    import asyncio

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
    except (EOFError, ConnectionError):  # EOFError: asyncio.IncompleteReadError's base
        return None


def encode_logs(batches: Iterable[list[tuple[str, int, bytes]]], *, tty: bool,
                timestamps: bool) -> Iterator[bytes]:
    """`logs`' response body, one chunk per batch of (stream, unix ns, bytes) entries: each entry
    framed (raw with a TTY), after its RFC 3339 time with `timestamps`."""
    from cais.engine.logfile import rfc3339_fixed
    pack = HEADER.pack
    second, prefix = -1, b""

    def stamped(ns: int) -> bytes:  # the date part formatted once a second
        nonlocal second, prefix
        if ns // 1_000_000_000 != second:
            second, prefix = ns // 1_000_000_000, rfc3339_fixed(ns)[:20]
        return b"%s%09dZ " % (prefix, ns % 1_000_000_000)

    for batch in batches:
        if timestamps:
            batch = [(stream, 0, stamped(ns) + data) for stream, ns, data in batch]
        if tty:
            yield b"".join([data for _, _, data in batch])
        else:
            yield b"".join([pack(STDERR if stream == "stderr" else STDOUT, len(data)) + data
                            for stream, _, data in batch])
