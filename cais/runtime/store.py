"""State of containers on disk: ROOT/ID/state.json (+ exec.fifo while created).

The status is never stored, it is observed: an init that is gone (or a zombie, or a recycled pid
with another start time) means `stopped`; the exec fifo still present means `created`.
"""

from __future__ import annotations

import os

from cais import fastjson
from cais.runtime import DEFAULT_ROOT as DEFAULT_ROOT  # the verbs use store.DEFAULT_ROOT
from cais.runtime.errors import ContainerExists, ContainerNotFound, RuntimeFailure, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if not container_id or not set(container_id) <= _ID_CHARS or container_id in (".", ".."):
        raise RuntimeFailure(f"invalid container id {container_id!r}")


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (None if the process is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Container:
    def __init__(self, root: str, container_id: str, data: dict[str, Any]) -> None:
        self.root = root
        self.id = container_id
        self.data = data

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    @property
    def config(self) -> dict[str, Any]:
        return self.data["config"]

    @property
    def pid(self) -> int:
        return self.data["pid"]

    def alive(self) -> bool:
        return self.pid > 0 and process_start_time(self.pid) == self.data.get("pid_start")

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        return "paused" if self.data.get("paused") else "running"

    def oci_state(self) -> dict[str, Any]:
        """The OCI state, plus the fields `runc state` adds (rootfs, created, owner)."""
        status = self.status()
        return {
            "ociVersion": self.config.get("ociVersion", "1.2.0"),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.config["root"]["path"],
            "created": self.data["created"],
            "owner": "",
            "annotations": self.config.get("annotations", {}),
        }

    def save(self) -> None:
        tmp = os.path.join(self.dir, "state.json.tmp")
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(self.data))
        os.replace(tmp, os.path.join(self.dir, "state.json"))

    def remove(self) -> None:
        # The directory holds files only (state.json, exec.fifo): no shutil (and its bz2, lzma...)
        # on the way out of every `run` and `delete`, unless something else was put there.
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        try:
            for name in names:
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def new(root: str, container_id: str, data: dict[str, Any]) -> Container:
    """Reserve ROOT/ID (mkdir is the lock: a second create of the same id fails)."""
    check_id(container_id)
    os.makedirs(root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(os.path.join(root, container_id), 0o711)
    except FileExistsError:
        raise ContainerExists(f"container {container_id} already exists") from None
    return Container(root, container_id, data)


def load(root: str, container_id: str) -> Container:
    check_id(container_id)
    path = os.path.join(root, container_id, "state.json")
    try:
        data = fastjson.load(path)
    except FileNotFoundError:
        raise ContainerNotFound(f"container {container_id} does not exist") from None
    except (OSError, ValueError) as e:
        raise RuntimeFailure(f"container {container_id}: unreadable state {path}: {e}") from None
    return Container(root, container_id, data)


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
