"""Fixtures of the image tests: an ImageStore on a real storage driver under a temporary root."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from cais.image.store import ImageStore, open_store
from tests.peers import _unmount_under


def make_store(top: str) -> ImageStore:
    return open_store(top)


@pytest.fixture
def image_root() -> Iterator[str]:
    top = tempfile.mkdtemp(prefix="cais-img-")
    try:
        yield top
    finally:
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def store(image_root: str) -> Iterator[ImageStore]:
    s = make_store(image_root)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def busybox_tar(busybox_dir: str) -> bytes:
    """The busybox image as `cais save` writes it (docker-archive), built once per session."""
    import io

    from cais.image.archive import save
    from cais.image.bootstrap import bootstrap_busybox

    top = tempfile.mkdtemp(prefix="cais-img-bb-")
    try:
        s = make_store(top)
        bootstrap_busybox(s)
        out = io.BytesIO()
        save(s, ["busybox:latest"], out)
        s.close()
        return out.getvalue()
    finally:
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)
