"""Fixtures of the storage tests: a temporary cais-st-* root, and each driver opened on it.

Whatever a test leaves mounted under its root is unmounted before the root is removed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from cais.linux import mount as mnt
from cais.storage import Driver, open_driver


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
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["overlay", "vfs"])
def driver(request: pytest.FixtureRequest, st_root: str) -> Driver:
    return open_driver(st_root, request.param)
