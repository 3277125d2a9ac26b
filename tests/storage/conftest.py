"""Fixtures of the storage tests: a temporary cais-st-* root, and each driver opened on it.

Whatever a test leaves mounted under its root is unmounted before the root is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from cais.linux import mount as mnt
from cais.storage import Driver, open_driver, reclaim


def unmount_under(root: str) -> None:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(root + "/")), key=len, reverse=True):
        with contextlib.suppress(OSError):
            mnt.umount(target, mnt.MNT_DETACH)


@pytest.fixture
def st_root() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="cais-st-")
    try:
        yield path
    finally:
        reclaim.wait_idle()  # removed writable layers are deleted in the background
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["overlay", "vfs"])
def driver(request: pytest.FixtureRequest, st_root: str) -> Driver:
    return open_driver(st_root, request.param)


def _tmpfs(st_root: str, name: str, options: str) -> Iterator[str]:
    """A tmpfs (named cais-st-tmpfs) at ST_ROOT/NAME, unmounted afterwards."""
    path = os.path.join(st_root, name)
    os.mkdir(path)
    mnt.mount("cais-st-tmpfs", path, "tmpfs", 0, options)
    try:
        yield path
    finally:
        mnt.umount(path, mnt.MNT_DETACH)


@pytest.fixture
def small_fs(st_root: str) -> Iterator[str]:
    """A 48 MiB tmpfs to fill."""
    yield from _tmpfs(st_root, "small", "size=48m,mode=0700")


@pytest.fixture
def few_inodes(st_root: str) -> Iterator[str]:
    """A tmpfs with room for 3000 inodes only."""
    yield from _tmpfs(st_root, "few-inodes", "size=64m,nr_inodes=3000,mode=0700")
