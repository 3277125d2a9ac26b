"""Layer blobs seen from the image side: their media type, and their uncompressed bytes hashed.

Decompression itself is the storage package's (cais.storage.compression: format sniffed from
the magic bytes, isal for gzip, zstandard for zstd); this adds a reader that hashes and counts
what passes through it and stops past a size limit (decompression bombs).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from cais.image.content import ContentStore
from cais.image.manifest import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from cais.storage.compression import decompressed, sniff
from cais.storage.errors import LayerTooLarge

DEFAULT_MAX_LAYER_SIZE = 64 << 30
OCI_LAYER_TYPES = {"tar": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def layer_media_type(content: ContentStore, digest: str) -> str:
    """The OCI layer media type for a stored layer blob, from its magic bytes (InvalidLayer if unusable)."""
    with content.open(digest) as f:
        return OCI_LAYER_TYPES[sniff(f.read(8))]


@contextlib.contextmanager
def uncompressed(content: ContentStore, digest: str, limit: int = DEFAULT_MAX_LAYER_SIZE) -> Iterator[HashingReader]:
    """The uncompressed tar of a stored layer blob, hashed as it is read."""
    with content.open(digest) as raw, decompressed(raw) as plain:
        yield HashingReader(plain, limit)


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

    def drain(self) -> None:
        """Read to the end (tar readers stop at the end-of-archive blocks; padding must count too)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return f"{self._algorithm}:{self._hash.hexdigest()}"
