"""Crash safety: a process SIGKILLed in the middle of an unpack leaves no layer that looks trusted,
the next start sweeps its debris, and a retry succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cais.storage import open_driver
from tests.storage.layers import E, stream, tar

CHILD = """
import sys
from cais.storage import open_driver
open_driver(sys.argv[1], sys.argv[2]).apply_diff("victim", None, sys.stdin.buffer)
"""


def _staging(root: str) -> list[str]:
    return [n for n in os.listdir(os.path.join(root, "layers")) if n.startswith((".tmp-", ".new-"))]


def _unpacked_files(root: str) -> int:
    layers = os.path.join(root, "layers")
    return sum(len(files) for name in _staging(root) for _, _, files in os.walk(os.path.join(layers, name)))


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_sigkill_mid_unpack(st_root, name):
    data = tar(*[E(f"dir{i // 50}/file{i}", data=os.urandom(4096)) for i in range(400)])
    proc = subprocess.Popen([sys.executable, "-c", CHILD, st_root, name], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert proc.stdin is not None
        proc.stdin.write(data[: len(data) // 2])  # half the layer, then the writer stalls: mid-unpack
        proc.stdin.flush()
        driver_root = os.path.join(st_root, name)
        deadline = time.monotonic() + 30
        while not (os.path.isdir(os.path.join(driver_root, "layers")) and _unpacked_files(driver_root) > 50):
            assert time.monotonic() < deadline, "the child never started unpacking"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdin:
            proc.stdin.close()
        if proc.stderr:
            proc.stderr.close()
    assert _staging(driver_root), "the kill should have left a half-made layer behind"

    driver = open_driver(st_root)  # the next start: picks the same driver, sweeps the debris
    assert driver.name == name
    assert not driver.has_layer("victim")
    assert _staging(driver_root) == []
    if name == "overlay":
        assert os.listdir(os.path.join(driver_root, "l")) == []
    result = driver.apply_diff("victim", None, stream(data))  # the retry is clean
    assert result.tar_size == len(data)
    driver.create_rw("c", "victim")
    try:
        rootfs = driver.mount("c")
        assert sum(len(files) for _, _, files in os.walk(rootfs)) == 400
    finally:
        driver.unmount("c")


def test_missing_short_link_is_repaired(st_root):
    """A crash between renaming a layer into place and making its l/ link is repaired at start."""
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(tar(E("f", data=b"x"))))
    links = os.path.join(driver.root, "l")
    (link,) = os.listdir(links)
    os.unlink(os.path.join(links, link))
    os.symlink("../layers/gone/diff", os.path.join(links, "DANGLING"))
    driver = open_driver(st_root)
    assert os.listdir(links) == [link]
    driver.create_rw("c", "base")
    try:
        assert os.listdir(driver.mount("c")) == ["f"]
    finally:
        driver.unmount("c")
