"""Volumes: names, labels and references over the drivers, in docker's JSON shapes.

A volume is used by a container from the moment the container is created with it until the
container is removed (a reference); it is mounted while that container runs. A volume with
references cannot be removed unless forced, and never — forced or not — while it is mounted.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import threading

from cais.volume import names
from cais.volume.driver import VolumeDriver
from cais.volume.errors import InvalidVolume, VolumeInUse, VolumeNotFound
from cais.volume.local import LocalDriver
from cais.volume.metadata import VolumeMetadata, VolumeRow

ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker ≥ 23 marks anonymous volumes so
FILTERS = {"name", "label", "label!", "dangling", "driver", "all"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")


def _truthy(value: str, key: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidVolume(f"invalid filter '{key}={value}'")


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


class Volumes:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o701, exist_ok=True)
        for entry in os.listdir(root):  # what a crash left halfway through a removal
            if entry.startswith(".removing-"):
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
        self.meta = VolumeMetadata(os.path.join(root, "metadata.db"))
        self.drivers: dict[str, VolumeDriver] = {"local": LocalDriver(root)}
        self.lock = threading.RLock()
        for row in self.meta.all():  # a removal the crash interrupted after its rename: finish it
            if row.driver in self.drivers and not os.path.isdir(os.path.dirname(self.drivers[row.driver].path(row.name))):
                self.meta.remove(row.name)

    def close(self) -> None:
        self.meta.close()

    def driver(self, name: str) -> VolumeDriver:
        if not isinstance(name, str):
            raise InvalidVolume("invalid Driver: expected a string")
        driver = self.drivers.get(name or "local")
        if driver is None:
            raise InvalidVolume(f"error looking up volume plugin {name}: plugin \"{name}\" not found")
        return driver

    # ---- docker's shapes ----------------------------------------------------------------------
    def document(self, row: VolumeRow, usage: bool = False) -> dict:
        doc = {"CreatedAt": row.created, "Driver": row.driver, "Labels": row.labels or None,
               "Mountpoint": self.driver(row.driver).path(row.name), "Name": row.name,
               "Options": row.options or None, "Scope": "local"}
        if usage:
            doc["UsageData"] = {"Size": self.driver(row.driver).size(row.name), "RefCount": len(row.refs)}
        return doc

    # ---- create / inspect / list ---------------------------------------------------------------
    def create(self, name: str | None = None, driver: str | None = None, labels: dict | None = None,
               options: dict | None = None, *, anonymous: bool = False) -> dict:
        driver_name = driver or "local"
        if labels is not None and (not isinstance(labels, dict)
                                   or not all(isinstance(v, str) for v in labels.values())):
            raise InvalidVolume("invalid Labels: expected an object of strings")
        if options is not None and not isinstance(options, dict):
            raise InvalidVolume("invalid DriverOpts: expected an object of strings")
        name = names.validate(name) if name else names.generate()
        drv = self.driver(driver_name)
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        with self.lock:
            existing = self.meta.get(name)
            if existing is not None:
                if existing.driver != driver_name:
                    raise VolumeInUse(f"create {name}: a volume with the name {name} already exists with the "
                                      f"{existing.driver} driver")
                return self.document(existing)
            drv.validate(options or {})
            drv.create(name, options or {})
            row = VolumeRow(name, driver_name, labels, dict(options or {}), _now(), anonymous)
            try:
                self.meta.add(row)
            except BaseException:
                with contextlib.suppress(Exception):
                    drv.remove(name, row.options)
                raise
            return self.document(row)

    def row(self, name: str) -> VolumeRow:
        row = self.meta.get(name) if isinstance(name, str) and name else None
        if row is None:
            raise VolumeNotFound(f"get {name}: no such volume")
        return row

    def inspect(self, name: str) -> dict:
        return self.document(self.row(name))

    def list(self, filters: dict[str, list[str]] | None = None, *, usage: bool = False) -> list[dict]:
        rows = self.filter(filters or {})
        return [self.document(r, usage) for r in rows]

    def filter(self, filters: dict[str, list[str]]) -> list[VolumeRow]:
        for key in filters:
            if key not in FILTERS:
                raise InvalidVolume(f"invalid filter '{key}'")
        dangling = {_truthy(v, "dangling") for v in filters.get("dangling", [])}
        out = []
        for r in self.meta.all():
            if filters.get("name") and not any(v in r.name for v in filters["name"]):
                continue
            if filters.get("driver") and r.driver not in filters["driver"]:
                continue
            if not _labels_match(r.labels, filters.get("label", [])):
                continue
            if filters.get("label!") and any(_labels_match(r.labels, [w]) for w in filters["label!"]):
                continue
            if dangling and (not r.refs) not in dangling:
                continue
            out.append(r)
        return out

    # ---- remove / prune ------------------------------------------------------------------------
    def remove(self, name: str, *, force: bool = False) -> None:
        with self.lock:
            row = self.meta.get(name)
            if row is None:
                if force:
                    return
                raise VolumeNotFound(f"get {name}: no such volume")
            if row.mounts:
                raise VolumeInUse(f"remove {name}: volume is in use by running container(s) - "
                                  f"[{', '.join(row.mounts)}]")
            if row.refs and not force:
                raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(row.refs)}]")
            self.driver(row.driver).remove(name, row.options)
            self.meta.remove(name)

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        filters = dict(filters or {})
        everything = any(_truthy(v, "all") for v in filters.pop("all", []))
        for key in filters:
            if key not in ("label", "label!"):
                raise InvalidVolume(f"invalid filter '{key}'")
        deleted, reclaimed = [], 0
        for row in self.filter(filters):
            if row.refs or row.mounts or (not everything and not row.anonymous):
                continue
            size = self.driver(row.driver).size(row.name)
            with contextlib.suppress(VolumeInUse, VolumeNotFound):
                self.remove(row.name)
                deleted.append(row.name)
                reclaimed += max(size, 0)
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ---- use by containers ---------------------------------------------------------------------
    def use(self, name: str, container: str) -> VolumeRow:
        """Reference the volume for `container` (it must exist)."""
        with self.lock:
            row = self.row(name)
            self.meta.add_ref(name, container)
            return row

    def release(self, container: str) -> list[str]:
        """Drop every reference of a removed container; the volumes it referenced."""
        with self.lock:
            return self.meta.drop_refs(container)

    def mount(self, name: str, container: str) -> str:
        """Make the volume available for a starting container; its host path."""
        with self.lock:
            row = self.row(name)
            self.meta.add_ref(name, container)
            path = self.driver(row.driver).mount(name, row.options)
            self.meta.add_mount(name, container)
            return path

    def unmount(self, name: str, container: str) -> bool:
        """Forget `container`'s mount of the volume (unmounting it if it was the last); whether it had one."""
        with self.lock:
            row = self.meta.get(name)
            if row is None:
                return False
            if self.meta.drop_mount(name, container) == 0:
                self.driver(row.driver).unmount(name, row.options)
            return container in row.mounts

    def reconcile(self, running: set[str], existing: set[str]) -> None:
        """After a restart or crash: forget mounts of containers no longer running and references of
        containers that no longer exist; unmount what nothing mounts any more."""
        with self.lock:
            for name, containers in self.meta.mounted_by().items():
                for c in containers:
                    if c not in running:
                        self.unmount(name, c)
            for row in self.meta.all():
                for c in row.refs:
                    if c not in existing:
                        self.meta.drop_refs(c)
                if not row.mounts:
                    self.driver(row.driver).unmount(row.name, row.options)
