"""`docker commit`: a container's writable layer becomes the top layer of a new image.

The storage driver writes the container's changes as an OCI layer tar (``.wh.`` whiteouts for
deletions) straight into the content store; the new config is the parent's plus that diff_id,
a history entry and the container's config with any ``--change`` instructions applied.
"""

from __future__ import annotations

import time
from typing import Any

from cais.image.config import ConfigError, apply_changes, diff_ids
from cais.image.filters import format_time
from cais.image.rootfs import make_image
from cais.image.store import ImageError, ImageStore, InvalidImage


def commit(store: ImageStore, container_id: str, reference: str | None = None,
           container_config: dict[str, Any] | None = None, changes: list[str] | None = None,
           comment: str = "", author: str = "") -> str:
    """Commit container `container_id` (registered with `store.add_container`) → the new image ID."""
    rows = store.meta.q("SELECT image_id FROM containers WHERE container_id = ?", container_id)
    if not rows:
        raise ImageError(f"No such container: {container_id}")
    parent_id = rows[0][0]
    if store.meta.image(parent_id) is None:
        raise ImageError(f"the image of container {container_id} was removed; cannot commit")
    parent = store.config(parent_id)
    try:
        new_config = apply_changes(container_config if container_config is not None else parent.get("config") or {},
                                   changes or [])
    except ConfigError as e:
        raise InvalidImage(str(e)) from None
    parent_layers = _layer_blobs(store, parent_id)
    with store.hold():
        writer = store.content.writer()
        try:
            result = store.driver.export_diff(container_id, writer)
            blob = writer.commit()
        except BaseException:
            writer.abort()
            raise
        if blob != result.diff_id:
            raise InvalidImage(f"exported diff of {container_id} hashes to {blob}, the driver said {result.diff_id}")
        now = format_time(time.time())
        cfg = {k: v for k, v in parent.items() if k not in ("rootfs", "history", "created", "container",
                                                             "container_config", "author", "comment")}
        cfg["config"] = new_config
        cfg["created"] = now
        cfg["container"] = container_id
        if author:
            cfg["author"] = author
        if comment:
            cfg["comment"] = comment
        entry: dict[str, Any] = {"created": now}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        cfg["history"] = [*(parent.get("history") or []), entry]
        layers = [*parent_layers, (blob, blob, store.content.size(blob))]
        return make_image(store, layers, cfg, reference, parent=parent_id)


def _layer_blobs(store: ImageStore, image_id: str) -> list[tuple[str, str, int]]:
    _, man = store.manifest(image_id)
    diffs = diff_ids(store.config(image_id))
    return [(layer.digest, d, layer.size) for layer, d in zip(man.layers, diffs, strict=True)]
