from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from cais.linux.mountinfo import entries
from tests.caisd import Caisd, caisd

OUR_ROOTS: list[str] = []  # only what this session made: other worktrees may run these tests at the same time


@pytest.fixture(scope="session")
def daemon() -> Iterator[Caisd]:
    """One caisd (with a busybox image) for the volume tests (tests/caisd.py, as the engine's tests)."""
    with caisd() as d:
        OUR_ROOTS.append(d.root + "/")
        yield d


def _ours() -> set[str]:
    return {e.mount_point for e in entries() if any(e.mount_point.startswith(r) for r in OUR_ROOTS)}


@pytest.fixture(autouse=True)
def no_mount_left() -> Iterator[None]:
    """Every test leaves the mount table as it found it (volume mounts, test binds)."""
    before = _ours()
    yield
    left = _ours() - before
    for path in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", path], check=False)
    assert not left, f"mounts left behind: {sorted(left)}"


@pytest.fixture
def vo_dir() -> Iterator[str]:
    """A temporary directory named cais-vo-…; anything mounted under it is unmounted first."""
    path = tempfile.mkdtemp(prefix="cais-vo-")
    OUR_ROOTS.append(path + "/")
    try:
        yield path
    finally:
        for mp in sorted((e.mount_point for e in entries() if e.mount_point.startswith(path + "/")
                          or e.mount_point == path), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], check=False)
        shutil.rmtree(path, ignore_errors=True)


def docker_ok(d: Caisd, *args: str) -> str:
    r = d.docker(*args, check=False)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.decode()}"
    return r.stdout.decode()


def docker_fails(d: Caisd, *args: str) -> str:
    r = d.docker(*args, check=False)
    assert r.returncode != 0, f"docker {' '.join(args)} succeeded: {r.stdout.decode()}"
    err = r.stderr.decode()
    assert "Traceback" not in err
    return err


os.environ.setdefault("DOCKER_CLI_HINTS", "false")
