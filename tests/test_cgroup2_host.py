"""The cgroup v2 hierarchy of the host the tests run on, checked with plain processes.

Skipped where no cgroup2 hierarchy has controllers (this project's CI machine keeps them on v1);
`scripts/vm-test` runs these tests in a guest that has one. They check the ground the runtime's
cgroup v2 code stands on, without using that code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.cgroup2

CONTROLLERS = {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}


def _v2_root() -> str | None:
    """The mount point of a cgroup2 hierarchy with the memory controller, if any.

    (A hybrid host like this project's CI machine has a cgroup2 mount with at most hugetlb.)
    """
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] != "cgroup2":
                continue
            mountpoint = left.split()[4]
            try:
                with open(os.path.join(mountpoint, "cgroup.controllers")) as c:
                    if "memory" in c.read().split():
                        return mountpoint
            except OSError:
                continue
    return None


@pytest.fixture(scope="module")
def v2_root() -> str:
    root = _v2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy with the memory controller here (run scripts/vm-test)")
    return root


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _keyed(path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in _read(path).splitlines())}


@contextlib.contextmanager
def _cgroup(parent: str, purpose: str) -> Iterator[str]:
    """A fresh cgroup under `parent`, emptied (cgroup.kill) and removed afterwards."""
    path = os.path.join(parent, f"cais-vm-{purpose}-{secrets.token_hex(4)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        _write(os.path.join(path, "cgroup.kill"), "1")
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except OSError:  # EBUSY until the killed processes are gone
                time.sleep(0.05)
        else:
            os.rmdir(path)


def test_every_controller_is_available_and_delegated(v2_root):
    available = set(_read(os.path.join(v2_root, "cgroup.controllers")).split())
    assert available >= CONTROLLERS, f"missing controllers: {CONTROLLERS - available}"
    with _cgroup(v2_root, "ctl") as cg:
        delegated = set(_read(os.path.join(cg, "cgroup.controllers")).split())
        assert {"memory", "pids", "cpu", "io"} <= delegated
        for name in ("memory.max", "memory.events", "pids.max", "cpu.max", "cpu.weight", "io.weight"):
            assert os.path.exists(os.path.join(cg, name)), name


def test_memory_max_oom_kills_an_allocating_child(v2_root):
    with _cgroup(v2_root, "oom") as cg:
        _write(os.path.join(cg, "memory.max"), str(32 << 20))
        if os.path.exists(os.path.join(cg, "memory.swap.max")):
            _write(os.path.join(cg, "memory.swap.max"), "0")
        # The child joins the cgroup itself, then touches memory a MiB at a time until killed.
        hog = "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n"
        child = subprocess.run(
            ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec "$2" -c "$3"', "sh", cg, sys.executable, hog],
            capture_output=True, timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        events = _keyed(os.path.join(cg, "memory.events"))
        assert events["oom_kill"] >= 1, events
        assert events["max"] >= 1, events
        assert _keyed(os.path.join(cg, "cgroup.events"))["populated"] == 0


def test_io_is_accounted_and_limited_on_a_disk(v2_root):
    scratch = tempfile.mkdtemp(prefix="cais-vm-test-", dir="/var/tmp")  # a disk in scripts/vm-test's guest
    try:
        rdev = os.stat(scratch).st_dev
        if os.major(rdev) == 0:
            pytest.skip("/var/tmp is not on a block device here")
        dev = f"{os.major(rdev)}:{os.minor(rdev)}"
        with _cgroup(v2_root, "io") as cg:
            _write(os.path.join(cg, "io.max"), f"{dev} wbps={64 << 20}")
            assert f"{dev} rbps=max wbps={64 << 20} riops=max wiops=max" in _read(os.path.join(cg, "io.max"))
            subprocess.run(
                ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=1M count=4 oflag=direct',
                 "sh", cg, os.path.join(scratch, "data")],
                check=True, capture_output=True, timeout=60,
            )
            stats = {line.split()[0]: dict(kv.split("=") for kv in line.split()[1:])
                     for line in _read(os.path.join(cg, "io.stat")).splitlines()}
            assert int(stats[dev]["wbytes"]) >= 4 << 20, stats
    finally:
        shutil.rmtree(scratch)
