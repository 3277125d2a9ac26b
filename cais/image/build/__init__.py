"""`cais build`: Dockerfile parsing, build contexts, the step cache and the builder (docs/build.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO


def build(images: Any, body: BinaryIO, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The engine's `POST /build`: `images` is its image service (`.store`, `.engine.data_root`);
    yields docker's JSON build messages. Under userns-remap (`.engine.remap`), RUN runs remapped."""
    from cais.image.build.service import api_build

    yield from api_build(images.store, os.path.join(images.engine.data_root, "build"), body, options,
                         id_shift=images.engine.remap)
