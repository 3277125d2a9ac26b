"""Container records on disk: DATA_ROOT/containers/ID/config.v2.json, written atomically.

A record is docker's inspect document (Id, Name, Config, HostConfig, State, …) plus a few private
keys under "Cais"; the engine keeps them in memory and saves every change with a rename, so a
crash of caisd leaves either the old or the new record, never half of one. What must survive a
machine crash (creation, configuration, a stop, an exit) is fsynced, and config.v2.durable.json is
then a hard link to it; what such a crash makes moot (that a container runs) is not, and if the
crash leaves that record unreadable, the last durable one is read instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading

from cais.engine.errors import Conflict, NotFound

RECORD = "config.v2.json"
DURABLE = "config.v2.durable.json"  # a hard link to the last record that was fsynced
TRASH = ".removed-"  # a removed container's directory, until the background deletes it


def write_json_atomic(path: str, value: object, *, durable: bool = True) -> None:
    """Write then rename; `durable` also fsyncs (records must survive a crash, a regenerated bundle need not).

    Without `durable` the old file is unlinked first rather than renamed over: ext4 starts writing a
    file renamed over another out at once (auto_da_alloc), which costs about what the skipped fsync
    would. Readers may then find no file for a moment, and a machine crash may leave none."""
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    text = json.dumps(value, separators=(",", ":"))  # dumps: json.dump encodes in Python, piece by piece
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    if not durable:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            value = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class ContainerStore:
    """Records by id with a name index; lookups by full id, unique id prefix or name."""

    def __init__(self, root: str, group: int = 0) -> None:
        """`group`: the group that may traverse the directories of containers made from now on
        (userns-remap's root); the roots of earlier mappings keep walking to theirs (0711)."""
        self.root = root
        self.group = group
        os.makedirs(root, mode=0o700, exist_ok=True)
        if group:
            os.chmod(root, 0o711)
        self.lock = threading.RLock()
        self.records: dict[str, dict] = {}
        self.legacy: set[str] = set()  # records of an older cais: no durable copy to fall back to yet
        for entry in sorted(os.listdir(root)):
            if entry.startswith(TRASH):  # a removal that a crash interrupted
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
                continue
            if not any(os.path.exists(os.path.join(root, entry, name)) for name in (RECORD, DURABLE)):
                if os.path.isdir(os.path.join(root, entry)):  # a --rm container a crash cut short in its create
                    shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
                continue
            # a record saved without fsync that a machine crash cut short: its last durable one
            record = read_json(os.path.join(root, entry, RECORD)) or read_json(os.path.join(root, entry, DURABLE))
            if record and record.get("Id") == entry:
                self.records[entry] = record
                if not os.path.exists(os.path.join(root, entry, DURABLE)):
                    self.legacy.add(entry)

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def add(self, record: dict, *, save: bool = True) -> None:
        """`save=False`: nothing on disk but the directory until the caller saves the complete record
        (a --rm container: what a crash leaves of its create goes, its directory at the next start)."""
        with self.lock:
            if self.by_name(record["Name"]) is not None:
                raise Conflict(f'Conflict. The container name "{record["Name"]}" is already in use by container '
                               f'"{self.by_name(record["Name"])["Id"]}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
            os.makedirs(self.dir(record["Id"]), mode=0o710)
            if self.group:
                os.chown(self.dir(record["Id"]), 0, self.group)
            self.records[record["Id"]] = record
            if save:  # the caller saves it durably once it is complete
                self.save(record, durable=False)

    def save(self, record: dict, *, durable: bool = True) -> None:
        """`durable=False` for changes a machine crash may lose (it stops every container anyway):
        no fsync; a record the crash leaves unreadable falls back to the last durable one."""
        with self.lock:
            if record["Id"] in self.records:
                path = os.path.join(self.dir(record["Id"]), RECORD)
                durable = durable or record["Id"] in self.legacy
                write_json_atomic(path, record, durable=durable)
                if durable:
                    self.legacy.discard(record["Id"])
                    link = os.path.join(self.dir(record["Id"]), f"{DURABLE}.tmp")
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(link)
                    os.link(path, link)
                    os.replace(link, os.path.join(self.dir(record["Id"]), DURABLE))

    def remove(self, cid: str) -> None:
        """The directory is renamed away, records and all, in one step (a crash never brings the
        container back) and deleted in the background (a crash leaves it to the next start's sweep)."""
        with self.lock:
            self.records.pop(cid, None)
        trash = os.path.join(self.root, f"{TRASH}{cid}")
        try:
            os.rename(self.dir(cid), trash)
        except FileNotFoundError:
            return
        except OSError:  # e.g. a trash of the same name left by a crash: deleted in place, records first
            for name in (DURABLE, RECORD):  # in this order: a crash in between leaves it whole
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir(cid), name))
            shutil.rmtree(self.dir(cid), ignore_errors=True)
            return
        from cais.storage.reclaim import delete_later  # the storage package: only when removing
        delete_later(trash)

    def by_name(self, name: str) -> dict | None:
        name = "/" + name.lstrip("/")
        for record in self.records.values():
            if record["Name"] == name:
                return record
        return None

    def get(self, ref: str) -> dict:
        with self.lock:
            if not ref:
                raise NotFound("No such container: ")
            if ref in self.records:
                return self.records[ref]
            named = self.by_name(ref)
            if named is not None:
                return named
            matches = [r for cid, r in self.records.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFound(f"multiple IDs found with provided prefix: {ref}")  # docker: 404 ambiguous
            raise NotFound(f"No such container: {ref}")

    def all(self) -> list[dict]:
        with self.lock:
            return sorted(self.records.values(), key=lambda r: r.get("Created", ""), reverse=True)
