"""Layer streams: decompression (isal gzip, zstandard) and a reader that hashes what it passes.

Used between the content store and the storage driver: the compressed blob is read once, the
uncompressed tar is hashed on its way into `driver.apply_diff`, and its digest checked against the
config's diff_id — no temporary copy. A byte limit stops decompression bombs.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_LAYER_SIZE = 64 << 30


class LayerTooLarge(Exception):
    pass


def sniff_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompressed(stream: BinaryIO, compression: str) -> BinaryIO:
    """A reader of the uncompressed bytes of `stream`."""
    if compression == "gzip":
        from isal import igzip

        return igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]
    if compression == "none":
        return stream
    raise ValueError(f"unknown compression {compression!r}")


class HashingReader:
    """Pass reads through, hashing and counting them; refuse to go past `limit` bytes."""

    def __init__(self, stream: BinaryIO, limit: int = DEFAULT_MAX_LAYER_SIZE, algorithm: str = "sha256") -> None:
        self._stream = stream
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.limit = limit
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        data = self._stream.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise LayerTooLarge(f"layer is larger than the limit of {self.limit} bytes uncompressed")
        self._hash.update(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read to the end (tar readers stop at the end-of-archive blocks; padding must count too)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return f"{self._algorithm}:{self._hash.hexdigest()}"
