"""Volume metadata in SQLite (WAL mode), like the image store's: volumes, who uses them, who mounted them.

Every change is one transaction, so a crash (or SIGKILL of caisd) leaves either the old or the new
state. `refs` are usage references (a container that names the volume, running or not: the
volume cannot be removed while one exists); `mounts` are active mounts (a running container),
which keep a volume with driver options mounted and make even a forced removal impossible.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name      TEXT PRIMARY KEY,
    driver    TEXT NOT NULL,
    labels    TEXT NOT NULL,   -- JSON object
    options   TEXT NOT NULL,   -- JSON object (the driver's options: type, device, o)
    created   TEXT NOT NULL,   -- RFC 3339, as docker's CreatedAt
    anonymous INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refs (
    volume    TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    container TEXT NOT NULL,
    PRIMARY KEY (volume, container)
);
CREATE TABLE IF NOT EXISTS mounts (
    volume    TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    container TEXT NOT NULL,
    PRIMARY KEY (volume, container)
);
"""


@dataclass
class VolumeRow:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    created: str
    anonymous: bool
    refs: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)


class VolumeMetadata:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.lock = threading.RLock()
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _row(self, r: tuple) -> VolumeRow:
        name = r[0]
        refs = [c for (c,) in self.db.execute("SELECT container FROM refs WHERE volume=?", (name,))]
        mounts = [c for (c,) in self.db.execute("SELECT container FROM mounts WHERE volume=?", (name,))]
        return VolumeRow(name, r[1], json.loads(r[2]), json.loads(r[3]), r[4], bool(r[5]), refs, mounts)

    def get(self, name: str) -> VolumeRow | None:
        with self.lock:
            r = self.db.execute("SELECT name, driver, labels, options, created, anonymous FROM volumes WHERE name=?",
                                (name,)).fetchone()
            return self._row(r) if r else None

    def all(self) -> list[VolumeRow]:
        with self.lock:
            rows = self.db.execute("SELECT name, driver, labels, options, created, anonymous FROM volumes "
                                   "ORDER BY name").fetchall()
            return [self._row(r) for r in rows]

    def add(self, row: VolumeRow) -> None:
        with self.lock:
            self.db.execute("INSERT INTO volumes (name, driver, labels, options, created, anonymous) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (row.name, row.driver, json.dumps(row.labels),
                                                          json.dumps(row.options), row.created, int(row.anonymous)))

    def remove(self, name: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM volumes WHERE name=?", (name,))

    def add_ref(self, name: str, container: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO refs (volume, container) VALUES (?, ?)", (name, container))

    def drop_refs(self, container: str) -> list[str]:
        """Forget every reference of `container`; the names of the volumes it referenced."""
        with self.lock:
            names = [v for (v,) in self.db.execute("SELECT volume FROM refs WHERE container=?", (container,))]
            self.db.execute("DELETE FROM refs WHERE container=?", (container,))
            return names

    def add_mount(self, name: str, container: str) -> int:
        """Record an active mount; how many there are now."""
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO mounts (volume, container) VALUES (?, ?)", (name, container))
            return self.db.execute("SELECT count(*) FROM mounts WHERE volume=?", (name,)).fetchone()[0]

    def drop_mount(self, name: str, container: str) -> int:
        with self.lock:
            self.db.execute("DELETE FROM mounts WHERE volume=? AND container=?", (name, container))
            return self.db.execute("SELECT count(*) FROM mounts WHERE volume=?", (name,)).fetchone()[0]

    def mounted_by(self) -> dict[str, list[str]]:
        with self.lock:
            out: dict[str, list[str]] = {}
            for v, c in self.db.execute("SELECT volume, container FROM mounts"):
                out.setdefault(v, []).append(c)
            return out
