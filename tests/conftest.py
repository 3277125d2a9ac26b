"""Shared fixtures: a busybox root filesystem and temporary cais-prefixed roots.

Every test cleans up after itself; names of kernel objects start with `cais`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from cais.image.bootstrap import BootstrapError, busybox_rootfs

if TYPE_CHECKING:
    import docker

    from tests.caisd import Caisd


@pytest.fixture(scope="session")
def busybox_dir() -> Iterator[str]:
    """A pristine busybox root filesystem, built once per session. Copy it before changing it."""
    top = tempfile.mkdtemp(prefix="cais-test-busybox-")
    try:
        yield busybox_rootfs(os.path.join(top, "rootfs"))
    except BootstrapError as e:
        pytest.skip(str(e))
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def tmp_root() -> Iterator[str]:
    """A fresh temporary directory named cais-*, removed after the test."""
    path = tempfile.mkdtemp(prefix="cais-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(daemon: Caisd) -> Iterator[docker.DockerClient]:
    """docker-py against the `daemon` fixture of the requesting test's directory."""
    import docker

    c = docker.DockerClient(base_url=daemon.host, timeout=60)
    try:
        yield c
    finally:
        c.close()
