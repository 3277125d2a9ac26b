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
from cais.storage.tarstream import BLOCK, is_tar_header

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_BLOCK = b"\x31\x41\x59\x26\x53\x59"  # after "BZh" and the block size digit
CHUNK = 1 << 20


def sniff(head: bytes) -> str:
    """'gzip', 'zstd' or 'tar' (anything else is handed to the tar reader, which judges it).
    A valid tar header wins over a magic number its first name happens to start with."""
    if len(head) >= BLOCK and is_tar_header(head[:BLOCK]):
        return "tar"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    other = "xz" if head.startswith(XZ_MAGIC) else \
        "bzip2" if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == BZIP2_BLOCK else None
    if other:
        raise InvalidLayer(f"layer is compressed with {other}, which OCI images do not use "
                           "(supported: gzip, zstd, uncompressed tar)")
    return "tar"


@contextlib.contextmanager
def decompressed(stream: BinaryIO) -> Iterator[BinaryIO]:
    """Read `stream` as the uncompressed tar it carries. The caller's stream is left open."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream, CHUNK)  # type: ignore[arg-type]
    kind = sniff(buffered.peek(BLOCK)[:BLOCK])
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
