"""docker's `local` log format: protobuf LogEntry messages, each framed by its length (big-endian
uint32) before and after, so the file reads forwards and, for `--tail`, backwards.

    message LogEntry { string source = 1; int64 time_nano = 2; bytes line = 3; bool partial = 4;
                       PartialLogEntryMetadata partial_log_metadata = 5; repeated LogAttr attrs = 6; }
    message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
    message LogAttr { string key = 1; string value = 2; }

Lines are stored without their newline; a reader adds it back unless the entry is a non-final part.
"""

from __future__ import annotations

import contextlib
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
    if msg.partial is None and not msg.attrs and msg.time_ns > 0 and len(msg.stream) == 6:
        # the common entry: source, time and line, the bytes the general encoding below gives
        line = msg.line
        body = b"\x0a\x06" + msg.stream.encode() + b"\x10" + pw.varint(msg.time_ns) + (
            b"\x1a" + pw.varint(len(line)) + line if line else b"")
        frame = _LEN.pack(len(body))
        return frame + body + frame
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


def encode_lines(stream: str, lines: list[bytes], times: list[int]) -> list[bytes]:
    """encode() of whole lines of one stream, each with its time, without a Message a line. A
    time's varint is its low 28 bits' four bytes, computed, then its high bits', kept while the
    same (~0.27 s)."""
    if len(stream) != 6 or min(times) < 1 << 28:
        return [encode(Message(stream, t, line)) for line, t in zip(lines, times, strict=True)]
    head = b"\x0a\x06" + stream.encode() + b"\x10"
    pack = _LEN.pack
    out = []
    high, high_bytes = -1, b""
    for line, t in zip(lines, times, strict=True):
        if t >> 28 != high:
            high = t >> 28
            high_bytes = pw.varint(high)
        low = t & 0xFFFFFFF
        when = ((low & 0x7F) | (low << 1 & 0x7F00) | (low << 2 & 0x7F0000) | (low << 3 & 0x7F000000)
                | 0x80808080).to_bytes(4, "little") + high_bytes
        size = len(line)
        if size >= 0x80:
            body = b"%s%s\x1a%s%s" % (head, when, pw.varint(size), line)
        elif size:
            body = b"%s%s\x1a%c%s" % (head, when, size, line)
        else:
            body = head + when
        frame = pack(len(body))
        out.append(b"%s%s%s" % (frame, body, frame))
    return out


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


_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
_CHUNK = 1 << 20


def _decode_plain(body: bytes) -> Message | None:
    """The common entry (source, time, line; nothing else) without the general decoder's
    per-field work, or None for any other entry."""
    if len(body) < 10 or body[0] != 0x0A or body[1] != 6 or body[8] != 0x10:
        return None
    stream = _STREAMS.get(body[2:8])
    if stream is None:
        return None
    time_ns = shift = 0
    pos = 9
    for byte in body[9:19]:  # the time's varint, inline: most of what an entry costs to read
        time_ns |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if byte < 0x80:
            break
    else:
        return None
    if time_ns >= 1 << 63:
        return None
    if pos == len(body):
        return Message(stream, time_ns, b"")
    if body[pos] != 0x1A or pos + 1 == len(body):
        return None
    size = body[pos + 1]
    if size < 0x80:
        pos += 2
    else:
        size, pos = pw.read_varint(body, pos + 1)
    if pos + size != len(body):
        return None
    return Message(stream, time_ns, body[pos:])


def decode(f: BinaryIO, end: int | None = None) -> Iterator[Message]:
    """Entries from f's position on; an entry still being written is left for the next call.
    A damaged frame raises CorruptLog (what follows it cannot be found again). Reads a chunk at
    a time: the position is past the entries of a chunk when they are handed out."""
    unpack = _LEN.unpack_from
    while True:
        base = f.tell()
        want = _CHUNK if end is None else min(_CHUNK, end - base)
        if want < 8:
            return
        data = f.read(want)
        pos, out, damage = 0, [], None
        try:
            while pos + 8 <= len(data):
                (size,) = unpack(data, pos)
                if size > MAX_ENTRY:
                    raise CorruptLog(f"log entry of {size} bytes at offset {base + pos} (more than {MAX_ENTRY})")
                stop = pos + 8 + size
                if stop > len(data):
                    if pos == 0 and len(data) == _CHUNK and (end is None or base + stop <= end):
                        data += f.read(stop - len(data))  # an entry bigger than a chunk
                        if stop > len(data):
                            break
                    else:
                        break
                if data[stop - 4:stop] != data[pos:pos + 4]:
                    raise CorruptLog(f"log entry at offset {base + pos}: header and footer lengths differ")
                body = data[pos + 4:stop - 4]
                out.append(_decode_plain(body) or decode_entry(body))
                pos = stop
        except CorruptLog as e:
            damage = e  # after the entries before it
        f.seek(base + pos)
        yield from out
        if damage is not None:
            raise damage
        if not out:
            return


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


_CONTINUED = 0x8080808080808080  # eight bytes of a varint, each saying another one follows


def since_offset(f: BinaryIO, size: int, since: int) -> int:
    """Where to start reading for the entries at or after `since`: the end of the last whole
    entry older than it (0 if none is, or if the footers do not add up; `size` if the last entry
    is older). Walks the footers backwards from `size` reading only times, a block at a time, so
    the cost is that of the entries to show. A long line's parts carry their first part's time:
    they are passed over, not taken as the end of what is older."""
    f.seek(0)
    head = f.read(4)
    if len(head) == 4 and 8 + (first := _LEN.unpack(head)[0]) <= min(size, MAX_ENTRY):
        with contextlib.suppress(CorruptLog):
            entry = decode_entry(f.read(first))
            if entry.partial is None and entry.time_ns >= since:
                return 0  # the whole file is to be shown: no need to walk it
    offset, base, data = size, size, b""  # data holds the file's bytes [base, offset)
    unpack, from_bytes = _LEN.unpack_from, int.from_bytes
    high_bytes, high = b"", 0
    while offset >= 8:
        if offset - 8 < base:
            base = max(0, offset - _CHUNK)
            f.seek(base)
            data = f.read(offset - base)
        (length,) = unpack(data, offset - 4 - base)
        start = offset - 8 - length
        if start < 0 or length > MAX_ENTRY:
            return 0
        if start < base:  # an entry bigger than what is left of the block
            old = base
            base = max(0, min(start, offset - _CHUNK))
            f.seek(base)
            data = f.read(old - base) + data[:offset - old]
        i = start - base
        if unpack(data, i)[0] != length:
            return 0
        # the time of an entry of these years: a 9-byte varint after the 6-byte source; its high
        # 5 bytes change every 2**28 ns, its low 4 are put together here
        if (length >= 18 and data[i + 4] == 0x0A and data[i + 5] == 6 and data[i + 12] == 0x10
                and data[i + 21] < 0x80 and from_bytes(data[i + 13:i + 21], "little") & _CONTINUED == _CONTINUED):
            if data[i + 17:i + 22] != high_bytes:
                high_bytes = data[i + 17:i + 22]
                high = pw.read_varint(high_bytes, 0)[0]
            low = from_bytes(data[i + 13:i + 17], "little")
            if high << 28 | (low & 0x7F) | (low >> 1 & 0x3F80) | (low >> 2 & 0x1FC000) | (low >> 3 & 0xFE00000) >= since:
                offset = start
                continue
        try:  # older, or another shape: the whole entry says whether it is a long line's part
            entry = decode_entry(data[i + 4:offset - 4 - base])
        except CorruptLog:
            return 0
        if entry.partial is None and entry.time_ns < since:
            return offset
        offset = start
    return 0
