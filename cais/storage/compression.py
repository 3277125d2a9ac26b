"""Decompressing layer streams: the format is sniffed from the magic bytes, not trusted from a media type.

gzip goes through isal (ISA-L's igzip, several times zlib's speed) on a reader thread, so
decompression overlaps with unpacking; zstd through the zstandard binding of libzstd.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import BinaryIO

from cais.storage.errors import InvalidLayer

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHERS = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x5d\x00\x00": "lzma"}
CHUNK = 1 << 20


def sniff(head: bytes) -> str:
    """'gzip', 'zstd' or 'tar' (anything else is handed to the tar reader, which judges it)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    for magic, name in _OTHERS.items():
        if head.startswith(magic):
            raise InvalidLayer(f"layer is compressed with {name}, which OCI images do not use "
                               "(supported: gzip, zstd, uncompressed tar)")
    return "tar"


@contextlib.contextmanager
def decompressed(stream: BinaryIO) -> Iterator[BinaryIO]:
    """Read `stream` as the uncompressed tar it carries. The caller's stream is left open."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream, CHUNK)  # type: ignore[arg-type]
    kind = sniff(buffered.peek(8)[:8])
    if kind == "tar":
        yield buffered  # type: ignore[misc]
        return
    if kind == "gzip":
        from isal import igzip_threaded
        reader = igzip_threaded.open(buffered, "rb", threads=1, block_size=CHUNK)
    else:
        import zstandard
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_size=CHUNK, read_across_frames=True,
                                                            closefd=False)
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):  # a corrupt stream may fail again on close; its error came first
            reader.close()
