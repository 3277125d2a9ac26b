from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.caisd import Caisd, caisd
from tests.registry.conftest import RunningRegistry, distribution_registry


@pytest.fixture(scope="session")
def daemon() -> Iterator[Caisd]:
    """One caisd (with a busybox image) shared by the engine, API and CLI tests."""
    with caisd() as d:
        yield d


PUSHED_REPOS = ("cais-en/busybox", "cais-en/busybox-extra", "cais-en/other", "tools/busytools")


@pytest.fixture(scope="session")
def pushed_registry(daemon: Caisd) -> Iterator[RunningRegistry]:
    """The CNCF distribution registry on loopback, with busybox pushed (by caisd) as PUSHED_REPOS."""
    with distribution_registry() as reg:
        port = reg.host.rpartition(":")[2]
        refs = [f"localhost:{port}/{repo}" for repo in PUSHED_REPOS]
        try:
            for ref in refs:
                daemon.docker("tag", "busybox", ref)
                daemon.docker("push", ref, timeout=120)
            yield reg
        finally:
            daemon.docker("rmi", *refs, check=False)
