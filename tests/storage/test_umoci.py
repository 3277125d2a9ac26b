"""The same multi-layer image (whiteouts, opaque directories, replaced types, hard links, setuid
files, devices, xattrs) unpacked by `umoci unpack` and by each cais driver gives the same rootfs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.storage.layers import E, oci_layout, tar
from tests.storage.test_preserve import describe

LAYERS = [
    tar(E("etc", "dir"), E("etc/old", data=b"old"), E("etc/keep", data=b"keep", uid=1000, gid=1000),
        E("usr", "dir"), E("usr/bin", "dir"), E("usr/bin/tool", data=b"\x7fELF", mode=0o4755),
        E("usr/bin/alias", "hardlink", target="usr/bin/tool"), E("usr/share", data=b"a file, for now"),
        E("usr/lib", "symlink", target="../lib"), E("lib", "dir", mode=0o700),
        E("var", "dir"), E("var/cache", "dir"), E("var/cache/a", data=b"a"), E("var/cache/sub", "dir"),
        E("var/cache/sub/b", data=b"b"), E("opt", "dir"), E("opt/keep", "dir"), E("opt/keep/x", data=b"x"),
        E("dev", "dir"), E("dev/null", "char", dev=(1, 3), mode=0o666), E("dev/fifo", "fifo"),
        E("home", "dir", mode=0o2775, gid=100), E("home/note", data=b"n", xattrs={"user.tag": b"v1"})),
    tar(E("etc/.wh.old"), E("var/cache/.wh..wh..opq"), E("var/cache/new", data=b"new"),
        E("usr/share", "dir"), E("usr/share/doc", data=b"doc"), E("opt/keep", data=b"now a file"),
        E("home/note", data=b"n2", xattrs={"user.tag": b"v2"})),
    tar(E(".wh.opt"), E("usr/bin/.wh.alias"), E("srv", "dir"), E("srv/www", "symlink", target="/var/www"),
        E("var/cache/sub", "dir"), E("var/cache/sub/c", data=b"c")),
]


@pytest.fixture(scope="module")
def umoci_rootfs(tmp_path_factory):
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (Debian package umoci)")
    top = str(tmp_path_factory.mktemp("cais-st-umoci-"))
    oci_layout(os.path.join(top, "oci"), LAYERS, tag="t")
    subprocess.run(["umoci", "unpack", "--image", f"{top}/oci:t", f"{top}/bundle"], check=True,
                   capture_output=True)
    yield os.path.join(top, "bundle", "rootfs")
    shutil.rmtree(top, ignore_errors=True)


def test_same_rootfs_as_umoci(driver, umoci_rootfs):
    parent = None
    for i, layer in enumerate(LAYERS):
        driver.apply_diff(f"l{i}", parent, __import__("io").BytesIO(layer))
        parent = f"l{i}"
    driver.create_rw("c", parent)
    try:
        ours = describe(driver.mount("c"))
    finally:
        driver.unmount("c")
    theirs = describe(umoci_rootfs)
    assert "var/cache/a" not in ours and "opt" not in ours and ours["usr/share/doc"]
    assert ours == theirs
