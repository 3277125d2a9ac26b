"""events: a container's resource usage and OOM kills, as `runc events` prints them.

One JSON object per line: ``{"type": "stats", "id": ID, "data": {...}}`` (the cgroup's Stats in
runc's shape, what containerd's shim parses) and ``{"type": "oom", "id": ID}`` for each OOM kill
seen. ``--stats`` prints one stats event and returns; otherwise stats come now and every
interval, OOM kills as they are seen, until the container stops.
"""

from __future__ import annotations

import time

from cais.runtime import cgroup, store
from cais.runtime.errors import InvalidState, RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_OOM_POLL = 0.1  # seconds between two reads of the OOM kill counter


def _running(container: store.Container) -> store.Container:
    if container.status() == "stopped":
        raise InvalidState(f"container {container.id} is not running")
    return container


def stats(container_id: str, *, root: str = store.DEFAULT_ROOT) -> dict[str, Any]:
    """The stats event of a running (or created, or paused) container."""
    container = _running(store.load(root, container_id))
    return {"type": "stats", "id": container_id, "data": cgroup.required(container).stats().to_runc()}


def events(container_id: str, emit: Callable[[dict[str, Any]], None], *, root: str = store.DEFAULT_ROOT,
           interval: float = 5.0) -> None:
    """Emit stats now and every ``interval`` seconds, and an oom event per OOM kill, until the
    container stops (or its cgroup goes)."""
    container = _running(store.load(root, container_id))
    manager = cgroup.required(container)
    try:
        kills = manager.oom_kills()
        due = time.monotonic()
        while container.status() != "stopped":
            seen = manager.oom_kills()
            for _ in range(seen - kills):
                emit({"type": "oom", "id": container_id})
            kills = seen
            if time.monotonic() >= due:
                emit({"type": "stats", "id": container_id, "data": manager.stats().to_runc()})
                due = time.monotonic() + interval
            time.sleep(min(_OOM_POLL, interval))
    except RuntimeFailure:
        if manager.exists():
            raise
        # deleted meanwhile: the container is gone, so are its events
