from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.caisd import Caisd, caisd


@pytest.fixture(scope="session")
def daemon() -> Iterator[Caisd]:
    """One caisd (with a busybox image) shared by the engine, API and CLI tests."""
    with caisd() as d:
        yield d
