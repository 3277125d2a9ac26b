"""Containers' root filesystems: a writable layer over the image's top layer (cais.storage).

Mounts are counted in memory (a running container holds one, a docker cp on a stopped one
another), so a copy never unmounts a running container's rootfs.
"""

from __future__ import annotations

import contextlib
import os
import threading

from cais.engine.errors import EngineError
from cais.engine.userns import IdMap
from cais.storage.errors import LayerNotFound


class RootfsService:
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        from cais.storage import open_driver
        self.engine = engine
        self.driver = open_driver(os.path.join(engine.data_root, "storage"), engine.storage_driver_name,
                                  engine.remap is not None)
        self.driver_name = {"overlay": "overlay2"}.get(self.driver.name, self.driver.name)
        self.users: dict[str, int] = {}
        self.lock = threading.Lock()
        # a --rm container's layer whose record a machine crash lost (it was not fsynced): disposable
        layers = self.driver.volatile_rw_layers()
        known = set(engine.store.records)  # read after the layers: a record exists before its layer
        for cid in layers:
            if cid not in known:
                with contextlib.suppress(Exception):
                    self.driver.remove_rw(cid)

    def create(self, cid: str, image: dict, remap: IdMap | None = None, *, volatile: bool = False) -> str:
        """`remap`: the user namespace mapping the container runs in (userns-remap), if any.
        `volatile`: the layer goes with the container (--rm), the driver need never flush it."""
        try:
            self.driver.create_rw(cid, self.engine.images.top_layer(image), remap, volatile=volatile)
        except Exception as e:
            raise EngineError(f"cannot create the container's filesystem: {e}") from e
        return self.driver_name

    def remap(self, cid: str) -> IdMap | None:
        """The mapping container `cid` was created with: it runs in it whatever the daemon's is now."""
        try:
            shift = self.driver.id_shift(cid)
        except LayerNotFound:
            return None
        return None if shift is None else IdMap(*shift)

    def graph_driver(self, cid: str) -> dict:
        return {"Name": self.driver_name, "Data": None}

    def mount(self, cid: str) -> str:
        with self.lock:
            path = self.driver.mount(cid)
            self.users[cid] = self.users.get(cid, 0) + 1
            return path

    def rootfs_path(self, cid: str) -> str:
        record = self.engine.get(cid)
        pid = record["State"]["Pid"]
        if record["State"]["Running"] and pid:
            return f"/proc/{pid}/root"
        return self.driver.mount(cid)

    def unmount(self, cid: str) -> None:
        with self.lock:
            left = self.users.get(cid, 0) - 1
            if left > 0:
                self.users[cid] = left
                return
            self.users.pop(cid, None)
            self.driver.unmount(cid)

    def remove(self, cid: str) -> None:
        with self.lock:
            self.users.pop(cid, None)
            with contextlib.suppress(Exception):
                self.driver.unmount(cid)
            try:
                self.driver.remove_rw(cid)
            except Exception as e:
                if "no writable layer" not in str(e):
                    raise

    def changes(self, cid: str) -> list[dict]:
        kinds = {"C": 0, "A": 1, "D": 2}
        return [{"Path": c.path, "Kind": kinds[c.kind]} for c in self.driver.changes(cid)]

    def size(self, cid: str) -> int:
        path = os.path.join(self.driver.root, "containers", cid, "diff")
        total = 0
        for dirpath, _, filenames in os.walk(path):
            for name in filenames:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def export_diff(self, cid: str, out) -> object:  # type: ignore[no-untyped-def]
        return self.driver.export_diff(cid, out)
