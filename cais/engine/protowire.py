"""The few pieces of the protobuf wire format that docker's `local` log driver needs.

Varints (wire type 0) and length-delimited fields (wire type 2) only, encoded in field-number order
and with proto3's rule that a field holding its default value (0, false, empty) is left out — the
bytes gogo/protobuf produces for the same message. Why no protobuf dependency: docs/dependencies.md.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT = 0
FIXED64 = 1
LENGTH = 2
FIXED32 = 5


class DecodeError(ValueError):
    pass


def varint(value: int) -> bytes:
    """Unsigned LEB128; negative int64/int32 values are sent as their 64-bit two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value) if value else b""


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | LENGTH) + varint(len(value)) + value if value else b""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); a varint longer than 10 bytes or cut short is a DecodeError."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field; unknown fixed-width fields are skipped over."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(data, pos)
            yield number, wire, value
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise DecodeError("length-delimited field runs past the message")
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire in (FIXED64, FIXED32):
            pos += 8 if wire == FIXED64 else 4
            if pos > len(data):
                raise DecodeError("fixed-width field runs past the message")
        else:
            raise DecodeError(f"unsupported wire type {wire}")
