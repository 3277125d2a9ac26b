from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.bundle import Runtime


@pytest.fixture
def rt(busybox_dir: str) -> Iterator[Runtime]:
    runtime = Runtime(busybox_dir)
    try:
        yield runtime
    finally:
        runtime.cleanup()
