"""state: the OCI state of one container."""

from __future__ import annotations

from typing import Any

from cais.runtime import store


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
