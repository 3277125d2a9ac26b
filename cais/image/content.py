"""The content store: blobs addressed by their digest, under ROOT/blobs/ALGO/HEX.

A blob becomes visible only once complete and verified: bytes go to a temporary file under
ROOT/ingest/, are hashed on the way, fsynced, checked against the expected digest and size, and
renamed into place. A crash at any point leaves at most an orphan in ingest/ (swept by
`sweep_ingest`), never a trusted half-written blob. Partial ingests can be resumed by name
(HTTP Range downloads): `writer(..., ref=NAME)` reopens ROOT/ingest/NAME and rehashes what is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from typing import BinaryIO

ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CHUNK = 1 << 20


class ContentError(Exception):
    """A blob could not be stored or found."""


class DigestMismatch(ContentError):
    pass


class BlobNotFound(ContentError):
    pass


def parse_digest(digest: str) -> tuple[str, str]:
    """Split and validate 'sha256:HEX'; raise ContentError on anything else."""
    m = _DIGEST.match(digest or "")
    if not m or len(m.group(2)) != ALGORITHMS[m.group(1)]:
        raise ContentError(f"invalid digest: {digest!r}")
    return m.group(1), m.group(2)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class BlobWriter:
    """Write a blob; `commit()` verifies and publishes it. Use as a context manager."""

    def __init__(
        self, store: ContentStore, expected: str | None, expected_size: int | None, ref: str | None
    ) -> None:
        self._store = store
        self.expected = expected
        self.expected_size = expected_size
        algorithm = parse_digest(expected)[0] if expected else "sha256"
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        name = ref if ref is not None else f"tmp-{os.getpid()}-{time.monotonic_ns()}"
        if not _REF.match(name):
            raise ContentError(f"invalid ingest reference: {name!r}")
        self.path = os.path.join(store.root, "ingest", name)
        self._file = open(self.path, "a+b")  # noqa: SIM115 - closed by commit/abort
        self._file.seek(0)
        while chunk := self._file.read(CHUNK):  # resume: rehash what an earlier attempt wrote
            self._hash.update(chunk)
        self.offset = self._file.tell()
        self._done = False

    def write(self, data: bytes) -> None:
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            raise ContentError(
                f"blob {self.expected or ''} is larger than its declared size {self.expected_size}"
            )
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def truncate(self) -> None:
        """Start over (a registry that ignored a Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.new(self._algorithm)
        self.offset = 0

    def commit(self) -> str:
        digest = f"{self._algorithm}:{self._hash.hexdigest()}"
        if self.expected is not None and digest != self.expected:
            self.abort()
            raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {digest}")
        if self.expected_size is not None and self.offset != self.expected_size:
            self.abort()
            raise ContentError(
                f"size mismatch for {digest}: expected {self.expected_size}, got {self.offset}"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target = self._store.path(digest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(self.path, target)
        _fsync_dir(os.path.dirname(target))
        self._done = True
        return digest

    def close(self) -> None:
        """Stop writing but keep the partial ingest, to be resumed later under the same `ref`."""
        if not self._done:
            self._file.close()
            self._done = True

    def abort(self) -> None:
        if not self._done:
            self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._done = True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.commit()


class ContentStore:
    """Blobs on disk by digest. Safe for concurrent processes: publication is a rename."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "ingest"), mode=0o700, exist_ok=True)
        for algorithm in ALGORITHMS:
            os.makedirs(os.path.join(root, "blobs", algorithm), mode=0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        algorithm, hexpart = parse_digest(digest)
        return os.path.join(self.root, "blobs", algorithm, hexpart)

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob not found: {digest}") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob not found: {digest}") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(
        self, expected: str | None = None, expected_size: int | None = None, ref: str | None = None
    ) -> BlobWriter:
        return BlobWriter(self, expected, expected_size, ref)

    def ingest(self, stream: BinaryIO, expected: str | None = None, expected_size: int | None = None) -> str:
        """Store everything `stream` yields; return its digest. Already-present blobs are not rewritten."""
        if expected is not None and self.has(expected):
            return expected
        with self.writer(expected, expected_size) as w:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
            return w.commit()

    def put(self, data: bytes, expected: str | None = None) -> str:
        digest = expected or digest_bytes(data)
        if self.has(digest):
            return digest
        with self.writer(expected, len(data)) as w:
            w.write(data)
            return w.commit()

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob (a check after a crash or a suspicious disk)."""
        algorithm, hexpart = parse_digest(digest)
        h = hashlib.new(algorithm)
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest() == hexpart

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def walk(self) -> Iterator[tuple[str, int]]:
        for algorithm in ALGORITHMS:
            with os.scandir(os.path.join(self.root, "blobs", algorithm)) as it:
                for entry in it:
                    yield f"{algorithm}:{entry.name}", entry.stat().st_size

    def sweep_ingest(self, older_than: float = 24 * 3600) -> int:
        """Remove abandoned partial ingests; return how many were removed."""
        removed = 0
        cutoff = time.time() - older_than
        with os.scandir(os.path.join(self.root, "ingest")) as it:
            for entry in it:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
