from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.engine.conftest import daemon  # noqa: F401 - the engine tests' caisd, not a copy of it
from tests.runtime.conftest import rt  # noqa: F401 - the runtime tests' cais-runtime on a temporary root

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="session")
def probe() -> Iterator[str]:
    """A static helper that calls syscalls by name and prints each one's errno (probe.c)."""
    out = tempfile.mkdtemp(prefix="cais-se-probe-", dir="/tmp")
    try:
        path = os.path.join(out, "probe")
        subprocess.run(["gcc", "-static", "-O2", "-o", path, os.path.join(HERE, "probe.c")], check=True)
        yield path
    finally:
        shutil.rmtree(out, ignore_errors=True)
