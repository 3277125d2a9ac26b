"""pause / resume: freeze and thaw every process of a container through its cgroup."""

from __future__ import annotations

from cais.runtime import cgroup, store
from cais.runtime.errors import InvalidState


def pause(container_id: str, *, root: str = store.DEFAULT_ROOT) -> None:
    container = store.load(root, container_id)
    if container.status() not in ("running", "created"):
        raise InvalidState(f"cannot pause a container that is {container.status()}")
    cgroup.required(container).freeze()
    container.data["paused"] = True
    container.save()


def resume(container_id: str, *, root: str = store.DEFAULT_ROOT) -> None:
    container = store.load(root, container_id)
    if container.status() != "paused":
        raise InvalidState(f"cannot resume a container that is {container.status()}")
    cgroup.required(container).thaw()
    container.data["paused"] = False
    container.save()
