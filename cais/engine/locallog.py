"""docker's `local` log format: protobuf LogEntry messages, each framed by its length (big-endian
uint32) before and after, so the file reads forwards and, for `--tail`, backwards.

    message LogEntry { string source = 1; int64 time_nano = 2; bytes line = 3; bool partial = 4;
                       PartialLogEntryMetadata partial_log_metadata = 5; repeated LogAttr attrs = 6; }
    message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
    message LogAttr { string key = 1; string value = 2; }

Lines are stored without their newline; a reader adds it back unless the entry is a non-final part.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from cais.engine import protowire as pw
from cais.engine.logfile import Message, Partial

MAX_ENTRY = 1_000_000  # docker's decoder refuses longer messages
_LEN = struct.Struct(">I")


class CorruptLog(ValueError):
    pass


def encode(msg: Message) -> bytes:
    body = (pw.field_bytes(1, msg.stream.encode()) + pw.field_varint(2, msg.time_ns)
            + pw.field_bytes(3, msg.line))
    if msg.partial is not None:
        meta = (pw.field_varint(1, int(msg.partial.last)) + pw.field_bytes(2, msg.partial.id.encode())
                + pw.field_varint(3, msg.partial.ordinal))
        body += pw.field_varint(4, 1) + pw.varint(5 << 3 | pw.LENGTH) + pw.varint(len(meta)) + meta
    for key, value in msg.attrs:
        attr = pw.field_bytes(1, key.encode()) + pw.field_bytes(2, value.encode())
        body += pw.varint(6 << 3 | pw.LENGTH) + pw.varint(len(attr)) + attr
    frame = _LEN.pack(len(body))
    return frame + body + frame


def decode_entry(body: bytes) -> Message:
    stream, time_ns, line, partial = "", 0, b"", False
    last, pid, ordinal = False, "", 0
    attrs = []
    try:
        for number, wire, value in pw.fields(body):
            if number == 1 and wire == pw.LENGTH:
                stream = value.decode()  # type: ignore[union-attr]
            elif number == 2 and wire == pw.VARINT:
                time_ns = pw.signed64(value)  # type: ignore[arg-type]
            elif number == 3 and wire == pw.LENGTH:
                line = value  # type: ignore[assignment]
            elif number == 4 and wire == pw.VARINT:
                partial = bool(value)
            elif number == 5 and wire == pw.LENGTH:
                for n, w, v in pw.fields(value):  # type: ignore[arg-type]
                    if n == 1 and w == pw.VARINT:
                        last = bool(v)
                    elif n == 2 and w == pw.LENGTH:
                        pid = v.decode()  # type: ignore[union-attr]
                    elif n == 3 and w == pw.VARINT:
                        ordinal = pw.signed64(v) & 0xFFFFFFFF  # type: ignore[arg-type]
            elif number == 6 and wire == pw.LENGTH:
                pair = {n: v for n, w, v in pw.fields(value) if w == pw.LENGTH}  # type: ignore[arg-type]
                attrs.append((pair.get(1, b"").decode(), pair.get(2, b"").decode()))  # type: ignore[union-attr]
    except (pw.DecodeError, UnicodeDecodeError) as e:
        raise CorruptLog(f"bad log entry: {e}") from None
    return Message(stream, time_ns, line, Partial(pid, ordinal, last) if partial else None, tuple(attrs))


def decode(f: BinaryIO, end: int | None = None) -> Iterator[Message]:
    """Entries from f's position on; an entry still being written is left for the next call.
    A damaged frame raises CorruptLog (what follows it cannot be found again)."""
    while end is None or f.tell() + 4 <= end:
        start = f.tell()
        head = f.read(4)
        if len(head) < 4:
            f.seek(start)
            return
        (size,) = _LEN.unpack(head)
        if size > MAX_ENTRY:
            raise CorruptLog(f"log entry of {size} bytes at offset {start} (more than {MAX_ENTRY})")
        rest = f.read(size + 4)
        if len(rest) < size + 4 or (end is not None and start + 8 + size > end):
            f.seek(start)
            return
        if rest[size:] != head:
            raise CorruptLog(f"log entry at offset {start}: header and footer lengths differ")
        yield decode_entry(rest[:size])


def tail_offset(f: BinaryIO, size: int, want: int) -> tuple[int, int]:
    """Where the last `want` entries before `size` start, and how many there are: walks the
    footers backwards, as docker; if they do not add up, counts the frames forwards instead."""
    offset, found = size, 0
    while offset >= 8 and found < want:
        f.seek(offset - 4)
        (length,) = _LEN.unpack(f.read(4))
        start = offset - 8 - length
        if start < 0:
            return _tail_forward(f, size, want)
        f.seek(start)
        if f.read(4) != _LEN.pack(length):
            return _tail_forward(f, size, want)
        offset, found = start, found + 1
    return offset, found


def _tail_forward(f: BinaryIO, size: int, want: int) -> tuple[int, int]:
    starts = []
    f.seek(0)
    while (pos := f.tell()) + 8 <= size:
        head = f.read(4)
        (length,) = _LEN.unpack(head)
        if pos + 8 + length > size or length > MAX_ENTRY:
            break
        f.seek(pos + 4 + length)
        if f.read(4) != head:
            break
        starts.append(pos)
    picked = starts[-want:]
    return (picked[0], len(picked)) if picked else (size, 0)
