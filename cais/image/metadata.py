"""Image metadata in SQLite (WAL mode): images, references, layer chains, container users.

Why SQLite: every change is a transaction that survives a crash (the WAL is replayed or
discarded as a whole), several processes (the daemon, a CLI without a daemon, tests) can read
while one writes, and lookups such as "which images use this layer" are queries instead of
hand-kept indexes. The blobs themselves stay files in the content store; this only records
what they mean.

Layers go through two states: a row is committed as ``unpacking`` before the storage driver is
asked to unpack it and turned ``ready`` after; a layer being removed goes back to ``unpacking``
before its directory is deleted. A crash in between leaves an ``unpacking`` row whose lock file
nobody holds, which `ImageStore` removes (with whatever the driver has of the layer).
A register pins each layer it relies on (`layer_pins`) in the same transaction that finds it
``ready``, and drops its pins in the transaction that records the image.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    chain_id   TEXT PRIMARY KEY,
    diff_id    TEXT NOT NULL,
    parent     TEXT REFERENCES layers(chain_id),
    size       INTEGER NOT NULL DEFAULT 0,   -- bytes of files the layer holds (docker's layer Size)
    diff_size  INTEGER NOT NULL DEFAULT 0,   -- bytes of its uncompressed tar
    state      TEXT NOT NULL CHECK (state IN ('unpacking', 'ready')),
    created    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS images (
    id            TEXT PRIMARY KEY,          -- the config digest
    top_layer     TEXT REFERENCES layers(chain_id),
    parent        TEXT,                      -- local parent image (commit/build), '' if none
    created       REAL NOT NULL,             -- from the config, seconds since the epoch
    size          INTEGER NOT NULL,
    os            TEXT NOT NULL,
    architecture  TEXT NOT NULL,
    variant       TEXT NOT NULL,
    labels        TEXT NOT NULL,             -- JSON object
    last_tag_time REAL NOT NULL DEFAULT 0,
    added         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_manifests (
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE TABLE IF NOT EXISTS image_blobs (   -- every blob an image keeps alive in the content store
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest   TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS blob_diffs (    -- compressed blob -> the layer it unpacks to
    digest     TEXT PRIMARY KEY,
    diff_id    TEXT NOT NULL,
    media_type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS blob_diffs_diff ON blob_diffs(diff_id);
CREATE TABLE IF NOT EXISTS refs (
    ref      TEXT PRIMARY KEY,               -- docker.io/library/busybox:latest or …@sha256:…
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    created  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS layer_pins (    -- layers an in-flight register relies on: removal skips them
    token    TEXT NOT NULL,                  -- one per register call
    chain_id TEXT NOT NULL,
    PRIMARY KEY (token, chain_id)
);
CREATE INDEX IF NOT EXISTS layer_pins_chain ON layer_pins(chain_id);
CREATE TABLE IF NOT EXISTS containers (    -- which container uses which image (and its layers)
    container_id TEXT PRIMARY KEY,
    image_id     TEXT NOT NULL,
    top_layer    TEXT,
    running      INTEGER NOT NULL DEFAULT 0
);
"""


class MetadataError(Exception):
    """The metadata database cannot be used by this version of cais."""


@dataclass(frozen=True)
class ImageRow:
    id: str
    top_layer: str | None
    parent: str
    created: float
    size: int
    os: str
    architecture: str
    variant: str
    labels: dict[str, str]
    last_tag_time: float
    added: float


@dataclass(frozen=True)
class LayerRow:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    diff_size: int
    state: str
    created: float


class Metadata:
    """One SQLite connection shared by the threads of a process (serialized by a lock)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise MetadataError(f"{path}: metadata schema version {version} is newer than this cais "
                               f"understands ({SCHEMA_VERSION})")
        self._db.executescript(SCHEMA)  # idempotent (IF NOT EXISTS); runs in its own transaction
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: takes the write lock up front, no upgrade deadlock).
        `durable=False`: committed without waiting for the disk (WAL with synchronous=NORMAL); the
        database stays consistent, but a machine crash may undo it — for what such a crash makes moot."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # layers
    def layer(self, chain_id: str) -> LayerRow | None:
        rows = self.q("SELECT * FROM layers WHERE chain_id = ?", chain_id)
        return LayerRow(*rows[0]) if rows else None

    def layers(self) -> list[LayerRow]:
        return [LayerRow(*r) for r in self.q("SELECT * FROM layers")]

    def layer_chain(self, top: str | None) -> list[LayerRow]:
        """The layers from the bottom one up to `top`."""
        chain: list[LayerRow] = []
        while top:
            row = self.layer(top)
            if row is None:
                break
            chain.append(row)
            top = row.parent
        return chain[::-1]

    # images
    def image(self, image_id: str) -> ImageRow | None:
        rows = self.q("SELECT * FROM images WHERE id = ?", image_id)
        return _image(rows[0]) if rows else None

    def images(self) -> list[ImageRow]:
        return [_image(r) for r in self.q("SELECT * FROM images ORDER BY created DESC, id")]

    def image_ids_with_prefix(self, prefix: str) -> list[str]:
        return [r[0] for r in self.q("SELECT id FROM images WHERE id LIKE ? ESCAPE '\\'",
                                     prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")]

    def manifests(self, image_id: str) -> list[tuple[str, str]]:
        return self.q("SELECT digest, media_type FROM image_manifests WHERE image_id = ? ORDER BY rowid", image_id)

    def children(self, image_id: str) -> list[str]:
        return [r[0] for r in self.q("SELECT id FROM images WHERE parent = ?", image_id)]

    # references
    def refs(self, image_id: str, kind: str | None = None) -> list[str]:
        if kind:
            return [r[0] for r in self.q("SELECT ref FROM refs WHERE image_id = ? AND kind = ? ORDER BY created, ref",
                                         image_id, kind)]
        return [r[0] for r in self.q("SELECT ref FROM refs WHERE image_id = ? ORDER BY created, ref", image_id)]

    def resolve_ref(self, ref: str) -> str | None:
        rows = self.q("SELECT image_id FROM refs WHERE ref = ?", ref)
        return rows[0][0] if rows else None

    def all_refs(self) -> list[tuple[str, str, str]]:
        return self.q("SELECT ref, image_id, kind FROM refs ORDER BY ref")

    # containers
    def container_users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(r[0], bool(r[1])) for r in
                self.q("SELECT container_id, running FROM containers WHERE image_id = ? ORDER BY container_id", image_id)]

    def container_layers(self) -> list[str]:
        return [r[0] for r in self.q("SELECT top_layer FROM containers WHERE top_layer IS NOT NULL")]


def _image(row: tuple[Any, ...]) -> ImageRow:
    values = list(row)
    values[8] = json.loads(values[8])
    return ImageRow(*values)


def now() -> float:
    return time.time()
