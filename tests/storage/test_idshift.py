"""userns-remap in the drivers: a writable layer created with an id shift sees the one copy of the
layers shifted (overlay: idmapped lowers; vfs: a chowned copy) and keeps host ids in what it writes."""

from __future__ import annotations

import io
import os
import tarfile

from cais.storage import open_driver
from cais.storage.idshift import IdShift
from tests.storage.layers import E, stream, tar, write

SHIFT = IdShift(300000, 65536, 400000, 65536)
BASE = tar(E("etc", "dir"), E("etc/conf", data=b"x", uid=7, gid=8), E("etc/root", data=b"r"),
           E("bin", "dir"), E("bin/su", data=b"#!su\n", mode=0o4755))


def _owner(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_shifted_view_of_unshifted_layers(driver) -> None:
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("remapped", "base", SHIFT)
    driver.create_rw("plain", "base")
    assert driver.id_shift("remapped") == SHIFT and driver.id_shift("plain") is None
    root = driver.mount("remapped")
    try:
        assert _owner(os.path.join(root, "etc/conf")) == (300007, 400008)
        assert _owner(root) == _owner(os.path.join(root, "etc/root")) == (300000, 400000)
        assert os.lstat(os.path.join(root, "bin/su")).st_mode & 0o7777 == 0o4755
        assert driver.changes("remapped") == []  # seeing the layers shifted changes nothing
        write(os.path.join(root, "etc/new"), "n")
        os.chown(os.path.join(root, "etc/new"), 300005, 400006)
        out = io.BytesIO()
        driver.export_diff("remapped", out)
        plain = driver.mount("plain")
        assert _owner(os.path.join(plain, "etc/conf")) == (7, 8)  # the layer itself: the image's owners
    finally:
        driver.unmount("remapped")
        driver.unmount("plain")
    assert [str(c) for c in driver.changes("remapped")] == ["C /etc", "A /etc/new"]
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        assert {m.name: (m.uid, m.gid) for m in t.getmembers()} == {"etc": (0, 0), "etc/new": (5, 6)}
    layers = os.path.join(driver.root, "layers")
    conf = [os.path.join(layers, n, "diff", "etc", "conf") for n in os.listdir(layers)]
    assert {_owner(p) for p in conf if os.path.exists(p)} == {(7, 8)}


def test_remapped_root_may_reach_containers_not_layers(st_root: str) -> None:
    driver = open_driver(st_root, "overlay", remapped=True)
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("c", "base", SHIFT)
    driver.create_rw("host", "base")
    container = os.path.join(driver.root, "containers", "c")
    for path in (st_root, driver.root, os.path.dirname(container)):
        assert os.stat(path).st_mode & 0o777 == 0o711, path
    st = os.stat(container)
    assert (st.st_mode & 0o777, st.st_gid) == (0o710, SHIFT.gid)
    assert os.stat(os.path.join(driver.root, "containers", "host")).st_mode & 0o777 == 0o700
    for name in ("layers", "l", "empty"):
        assert os.stat(os.path.join(driver.root, name)).st_mode & 0o777 == 0o700


def test_idmapped_layers_attached_by_path_for_older_kernels(st_root: str) -> None:
    """The path taken before Linux 6.13 (no overlay layer by fd), forced here: same view, and the
    attached layers are gone once the overlay is made."""
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    driver.apply_diff("top", "base", stream(tar(E("etc", "dir"), E("etc/top", data=b"t", uid=3, gid=4))))
    driver.create_rw("c", "top", SHIFT)
    driver._layers_by_fd = False
    root = driver.mount("c")
    try:
        assert _owner(os.path.join(root, "etc/conf")) == (300007, 400008)
        assert _owner(os.path.join(root, "etc/top")) == (300003, 400004)
        container = os.path.join(driver.root, "containers", "c")
        assert not os.path.exists(os.path.join(container, "lowers"))
        with open("/proc/self/mountinfo") as f:
            assert not any(os.path.join(container, "lowers") in line for line in f)
        write(os.path.join(root, "etc/new"), "n")
        assert _owner(os.path.join(container, "diff", "etc")) == (300000, 400000)
    finally:
        driver.unmount("c")


def test_removal_never_walks_into_a_layer_left_attached(st_root: str) -> None:
    """A crash between attaching an idmapped layer and detaching it: removing the container
    detaches it first, and the shared layer keeps its files."""
    from cais.linux import fsmount
    from cais.storage.idshift import user_namespace
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("c", "base", SHIFT)
    point = os.path.join(driver.root, "containers", "c", "lowers", "0")
    os.makedirs(point)
    layer = os.path.join(driver.root, "layers", "base", "diff")
    fd = fsmount.idmapped_tree(layer, user_namespace(SHIFT))
    try:
        fsmount.move_mount_to(fd, point)
    finally:
        os.close(fd)
    driver.remove_rw("c")
    assert os.path.exists(os.path.join(layer, "etc", "conf"))
