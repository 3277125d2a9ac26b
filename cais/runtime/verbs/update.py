"""update: change the cgroup limits (linux.resources) of a running container."""

from __future__ import annotations

from cais.runtime import cgroup, store
from cais.runtime.errors import InvalidState

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def update(container_id: str, resources: dict[str, Any], *, root: str = store.DEFAULT_ROOT) -> None:
    container = store.load(root, container_id)
    if container.status() == "stopped":
        raise InvalidState("cannot update a stopped container")
    cgroup.required(container).update(resources)
    linux = container.config.setdefault("linux", {})
    _merge(linux.setdefault("resources", {}), resources)
    container.save()
