"""state: the OCI state of one container."""

from __future__ import annotations

from cais.runtime import store

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def state(container_id: str, *, root: str = store.DEFAULT_ROOT) -> dict[str, Any]:
    return store.load(root, container_id).oci_state()


def list_containers(root: str = store.DEFAULT_ROOT) -> list[dict[str, Any]]:
    states = []
    for container_id in store.list_ids(root):
        try:
            states.append(store.load(root, container_id).oci_state())
        except Exception:  # noqa: BLE001 - a half-deleted container must not hide the others
            continue
    return states
