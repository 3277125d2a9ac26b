"""Fixtures of the build tests: an image store with busybox, a builder, and a dockerd peer that has
the very same busybox image (saved by cais, loaded by docker)."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cais.image.build.builder import Builder, BuildOptions
from cais.image.build.context import BuildContext
from cais.image.build.events import Event, plain_text
from cais.image.build.runner import Runner
from cais.image.store import ImageStore
from cais.storage import open_driver
from tests.peers import _unmount_under


@dataclass
class Cais:
    top: str
    store: ImageStore
    builder: Builder
    events: list[Event]

    def build(self, context_dir: str, dockerfile: str | None = None, **options: object) -> str:
        self.events.clear()
        with BuildContext.open(context_dir, dockerfile, tmp_dir=self.builder.tmp_dir) as ctx:
            return self.builder.build(ctx, BuildOptions(**options), self.events.append)  # type: ignore[arg-type]

    def output(self) -> str:
        return "".join(plain_text(e) for e in self.events)


def make_cais(top: str) -> Cais:
    store = ImageStore(os.path.join(top, "image"), open_driver(os.path.join(top, "storage")))
    builder = Builder(store, Runner(os.path.join(top, "runtime")), os.path.join(top, "build"))
    return Cais(top, store, builder, [])


@pytest.fixture(scope="session")
def busybox_archive() -> Iterator[bytes]:
    """busybox:latest made by cais's bootstrap, as a docker-archive (so docker gets the same image)."""
    from cais.image.archive import save
    from cais.image.bootstrap import BootstrapError, bootstrap_busybox

    top = tempfile.mkdtemp(prefix="cais-build-bb-")
    try:
        store = ImageStore(os.path.join(top, "image"), open_driver(os.path.join(top, "storage")))
        try:
            bootstrap_busybox(store)
        except BootstrapError as e:
            pytest.skip(str(e))
        out = io.BytesIO()
        save(store, ["busybox:latest"], out)
        store.close()
        yield out.getvalue()
    finally:
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)


@contextlib.contextmanager
def _cais(busybox_archive: bytes) -> Iterator[Cais]:
    from cais.image.archive import load

    top = tempfile.mkdtemp(prefix="cais-build-")
    c = make_cais(top)
    try:
        load(c.store, io.BytesIO(busybox_archive))
        yield c
    finally:
        c.store.close()
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def cais(busybox_archive: bytes) -> Iterator[Cais]:
    """A fresh store with busybox:latest and a builder."""
    with _cais(busybox_archive) as c:
        yield c


@pytest.fixture(scope="module")
def shared_cais(busybox_archive: bytes) -> Iterator[Cais]:
    """One store for a module's tests that only need busybox (failing builds, mostly)."""
    with _cais(busybox_archive) as c:
        yield c


def leftovers(top: str) -> list[str]:
    """Mounts under `top` and writable layers or runtime state a build forgot."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(top + "/")]
    found = list(mounts)
    runtime_root = os.path.join(top, "runtime")
    if os.path.isdir(runtime_root):
        found += [f"runtime:{name}" for name in os.listdir(runtime_root)]
    for depth in ("*", "*/*", "*/*/*"):
        found += glob.glob(os.path.join(top, "storage", depth, "cais-build-*"))
    return found
