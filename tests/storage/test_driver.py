"""Both drivers, same behaviour: layers, writable layers, mounts, changes and exported diffs."""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile

import pytest
import zstandard

from cais.storage import (
    Change,
    InvalidLayer,
    LayerExists,
    LayerNotFound,
    LayerTooLarge,
    StorageError,
    open_driver,
    reclaim,
)
from tests.storage.layers import E, read, stream, tar, write

BASE = tar(E("bin", "dir"), E("bin/sh", data=b"#!shell\n", mode=0o755), E("etc", "dir"),
           E("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), E("etc/motd", data=b"hello\n"),
           E("var", "dir"), E("var/cache", "dir"), E("var/cache/a", data=b"a"), E("var/cache/b", data=b"b"))


def _tree(path: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = read(p) if os.path.isfile(p) and not os.path.islink(p) else None
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, content,
                                            os.readlink(p) if os.path.islink(p) else None)
    return out


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_apply_diff_digest_and_size(driver, compression):
    result = driver.apply_diff("base", None, stream(_compress(BASE, compression)))
    assert result.diff_id == "sha256:" + hashlib.sha256(BASE).hexdigest()
    assert result.tar_size == len(BASE)
    assert result.size == driver.layer_size("base") == len(b"#!shell\n" b"root:x:0:0::/root:/bin/sh\n" b"hello\nab")
    assert driver.has_layer("base") and not driver.has_layer("other")


def _compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def test_rootfs_of_layers_with_whiteouts(driver):
    driver.apply_diff("base", None, stream(BASE))
    driver.apply_diff("top", "base", stream(tar(E("etc/.wh.motd"), E("var/cache/.wh..wh..opq"),
                                                E("var/cache/c", data=b"c"), E("etc/hostname", data=b"box\n"))))
    driver.create_rw("c1", "top")
    root = driver.mount("c1")
    try:
        assert sorted(os.listdir(os.path.join(root, "etc"))) == ["hostname", "passwd"]
        assert sorted(os.listdir(os.path.join(root, "var/cache"))) == ["c"]
        assert read(os.path.join(root, "bin/sh")) == b"#!shell\n"
        assert driver.mount("c1") == root  # idempotent
    finally:
        driver.unmount("c1")
    driver.remove_rw("c1")
    # the base layer is unchanged by what the top one hides
    driver.create_rw("c2", "base")
    try:
        assert sorted(os.listdir(os.path.join(driver.mount("c2"), "var/cache"))) == ["a", "b"]
    finally:
        driver.unmount("c2")


def test_empty_layers_and_no_parent(driver):
    driver.create_layer("empty", None)
    assert driver.layer_size("empty") == 0
    driver.create_rw("c", None)
    root = driver.mount("c")
    try:
        assert os.listdir(root) == []
        write(os.path.join(root, "f"), "x")
        assert driver.changes("c") == [Change("A", "/f")]
    finally:
        driver.unmount("c")


def test_errors_are_clear(driver):
    driver.apply_diff("base", None, stream(BASE))
    with pytest.raises(LayerExists, match="layer base already exists"):
        driver.apply_diff("base", None, stream(BASE))
    with pytest.raises(LayerNotFound, match="layer nope not found"):
        driver.apply_diff("child", "nope", stream(BASE))
    with pytest.raises(StorageError, match="invalid layer id"):
        driver.apply_diff("../evil", None, stream(BASE))
    with pytest.raises(LayerNotFound):
        driver.mount("no-such-container")
    with pytest.raises(InvalidLayer, match="not a valid tar"):
        driver.apply_diff("garbage", None, stream(b"x" * 4096))
    with pytest.raises(InvalidLayer, match="truncated"):
        driver.apply_diff("cut", None, stream(BASE[:1500]))
    with pytest.raises(InvalidLayer, match="xz"):
        driver.apply_diff("xz", None, stream(b"\xfd7zXZ\x00" + b"\0" * 100))
    with pytest.raises(InvalidLayer, match="corrupt"):
        driver.apply_diff("badgz", None, stream(_compress(BASE, "gzip")[:200] + b"\xff" * 500))
    for bad in ("garbage", "cut", "xz", "badgz", "child"):
        assert not driver.has_layer(bad)
    driver.create_rw("c", "base")
    with pytest.raises(StorageError, match="already has a writable layer"):
        driver.create_rw("c", "base")


def test_remove_layer(driver):
    driver.apply_diff("base", None, stream(BASE))
    driver.remove_layer("base")
    assert not driver.has_layer("base")
    with pytest.raises(LayerNotFound):
        driver.remove_layer("base")
    driver.apply_diff("base", None, stream(BASE))  # the id can be reused
    assert driver.has_layer("base")


def test_changes_and_export_diff(driver):
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("c", "base")
    root = driver.mount("c")
    try:
        write(os.path.join(root, "etc/motd"), "edited\n", "a")
        os.unlink(os.path.join(root, "etc/passwd"))
        os.makedirs(os.path.join(root, "srv/www"))
        write(os.path.join(root, "srv/www/index.html"), "<p>")
        os.link(os.path.join(root, "srv/www/index.html"), os.path.join(root, "srv/www/alias.html"))
        os.symlink("www/index.html", os.path.join(root, "srv/link"))
        import shutil
        shutil.rmtree(os.path.join(root, "var/cache"))
        os.mkdir(os.path.join(root, "var/cache"))
        write(os.path.join(root, "var/cache/new"), "n")
        expected_tree = _tree(root)
        changes = [str(c) for c in driver.changes("c")]
        assert changes[:4] == ["C /etc", "C /etc/motd", "D /etc/passwd", "A /srv"]
        assert "A /srv/www/index.html" in changes and "A /srv/link" in changes
        assert "A /var/cache/new" in changes and "C /var" in changes
        assert {"C /var/cache", "D /var/cache/a", "D /var/cache/b"} <= set(changes)  # rm -rf, mkdir: opaque

        one, two = io.BytesIO(), io.BytesIO()
        r1 = driver.export_diff("c", one, source_date_epoch=1_000)
        r2 = driver.export_diff("c", two, source_date_epoch=1_000)
    finally:
        driver.unmount("c")
    assert one.getvalue() == two.getvalue() and r1 == r2  # reproducible
    assert r1.diff_id == "sha256:" + hashlib.sha256(one.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(one.getvalue())) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert "etc/.wh.passwd" in names and "etc/motd" in names and "etc/passwd" not in names
    assert all(m.mtime <= 1_000 and m.uname == "" for m in members)
    index = next(m for m in members if m.name == "srv/www/index.html")
    assert index.islnk() and index.linkname == "srv/www/alias.html"  # sorted: alias comes first
    # The exported diff applied on the same parent gives the container's tree again.
    driver.apply_diff("committed", "base", io.BytesIO(one.getvalue()))
    driver.create_rw("check", "committed")
    try:
        got = _tree(driver.mount("check"))
    finally:
        driver.unmount("check")
    assert {k: v[1:] for k, v in got.items()} == {k: v[1:] for k, v in expected_tree.items()}


def test_auto_selection_and_override(st_root):
    assert open_driver(st_root).name == "overlay"  # OverlayFS works on this machine's /tmp
    other = os.path.join(st_root, "second")
    assert open_driver(other, "vfs").name == "vfs"
    assert open_driver(other).name == "vfs"  # the driver already in use is kept
    with pytest.raises(StorageError, match="unknown storage driver"):
        open_driver(st_root, "zfs")


def test_many_layers_mount(driver):
    if driver.name == "vfs":
        pytest.skip("vfs has no mount; its depth costs only copies")
    parent = None
    for i in range(120):
        driver.apply_diff(f"l{i}", parent, stream(tar(E(f"f{i:03}", data=str(i).encode()))))
        parent = f"l{i}"
    driver.create_rw("deep", parent)
    try:
        root = driver.mount("deep")
        assert len(os.listdir(root)) == 120
        assert read(os.path.join(root, "f000")).decode() == "0"
    finally:
        driver.unmount("deep")


def test_overlay_stores_kernel_whiteouts(st_root):
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    driver.apply_diff("top", "base", stream(tar(E("etc/.wh.motd"), E("var/cache/.wh..wh..opq"))))
    diff = os.path.join(driver.root, "layers", "top", "diff")
    st = os.lstat(os.path.join(diff, "etc/motd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(diff, "var/cache"), "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(os.path.join(diff, "etc/.wh.motd"))
    # the short link names keep the options short, whatever the root's path
    lower = read(os.path.join(driver.root, "layers", "top", "lower")).decode()
    assert lower.startswith("l/") and len(lower) == 28


def test_vfs_applies_whiteouts_as_deletions(st_root):
    driver = open_driver(st_root, "vfs")
    driver.apply_diff("base", None, stream(BASE))
    driver.apply_diff("top", "base", stream(tar(E("var/cache/keep", data=b"k"), E("var/cache/.wh..wh..opq"),
                                                E("etc/.wh.motd"))))
    diff = os.path.join(driver.root, "layers", "top", "diff")
    assert sorted(os.listdir(os.path.join(diff, "var/cache"))) == ["keep"]  # kept: same layer
    assert sorted(os.listdir(os.path.join(diff, "etc"))) == ["passwd"]
    assert sorted(os.listdir(os.path.join(driver.root, "layers", "base", "diff", "etc"))) == ["motd", "passwd"]


def test_overlay_refuses_to_remove_a_layer_in_use(st_root):
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    driver.create_layer("child", "base")
    with pytest.raises(StorageError, match="layer base is in use by layer child"):
        driver.remove_layer("base")
    driver.remove_layer("child")
    driver.create_rw("c", "base")
    with pytest.raises(StorageError, match="layer base is in use by container c"):
        driver.remove_layer("base")
    driver.remove_rw("c")
    driver.remove_layer("base")


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_unpack_stops_before_the_disk_is_full(small_fs, name):
    driver = open_driver(small_fs, name)
    driver.disk_reserve = 16 << 20
    layer = tar(*[E(f"f{i}", data=os.urandom(1 << 20)) for i in range(40)])
    with pytest.raises(LayerTooLarge, match="less than 16 MiB left free"):
        driver.apply_diff("big", None, stream(layer))
    assert not driver.has_layer("big")
    free = os.statvfs(small_fs)
    assert free.f_bavail * free.f_frsize > 40 << 20  # the half-made layer was removed


def test_mount_and_unmount_are_idempotent(driver):
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("c", "base")
    first = driver.mount("c")
    assert driver.mount("c") == first
    driver.unmount("c")
    driver.unmount("c")
    if driver.name == "overlay":
        assert not os.path.ismount(first)
    driver.mount("c")
    driver.remove_rw("c")  # unmounts first
    assert not os.path.exists(first)


def test_parents_a_layer_only_writes_into_keep_their_metadata(driver):
    driver.apply_diff("base", None, stream(tar(E("tmp", "dir", mode=0o1777, mtime=1000),
                                               E("opt", "dir", mode=0o750, uid=1000, gid=1000, mtime=2000,
                                                 xattrs={"user.kind": b"opt"}))))
    driver.apply_diff("top", "base", stream(tar(E("tmp/x", data=b"x"), E("opt/y", data=b"y"))))
    driver.create_rw("c", "top")
    try:
        root = driver.mount("c")
        tmp, opt = os.lstat(os.path.join(root, "tmp")), os.lstat(os.path.join(root, "opt"))
        assert (stat.S_IMODE(tmp.st_mode), tmp.st_mtime) == (0o1777, 1000)
        assert (stat.S_IMODE(opt.st_mode), opt.st_uid, opt.st_gid, opt.st_mtime) == (0o750, 1000, 1000, 2000)
        assert os.getxattr(os.path.join(root, "opt"), "user.kind") == b"opt"
    finally:
        driver.unmount("c")


def test_concurrent_unpacks_and_mounts(driver):
    from concurrent.futures import ThreadPoolExecutor

    def layer(i: int) -> str:
        driver.apply_diff(f"l{i}", None, stream(tar(*[E(f"d{i}/f{j}", data=os.urandom(2048)) for j in range(50)])))
        driver.create_rw(f"c{i}", f"l{i}")
        return driver.mount(f"c{i}")

    with ThreadPoolExecutor(4) as pool:
        roots = list(pool.map(layer, range(8)))
    try:
        for i, root in enumerate(roots):
            assert len(os.listdir(os.path.join(root, f"d{i}"))) == 50
        assert os.getcwd() != driver.root  # the mounts' chdir stayed in their threads
    finally:
        for i in range(8):
            driver.unmount(f"c{i}")


def test_stacks_beyond_one_page_of_options(st_root):
    """150 layers: past mount(2)'s page of options, mounted with fsconfig(2) one layer at a time."""
    driver = open_driver(st_root, "overlay")
    parent = None
    for i in range(150):
        if i % 10 == 0:
            driver.apply_diff(f"l{i}", parent, stream(tar(E(f"f{i:03}", data=str(i).encode()))))
        else:
            driver.create_layer(f"l{i}", parent)
        parent = f"l{i}"
    driver.create_rw("deep", parent)
    try:
        root = driver.mount("deep")
        assert len(os.listdir(root)) == 15 and read(os.path.join(root, "f000")) == b"0"
    finally:
        driver.unmount("deep")


def test_compression_is_sniffed_not_guessed_from_names(driver):
    """A tar whose first entry's name starts like a compression magic is still a tar; bzip2 is refused."""
    import bz2
    for name in ("BZh91AY&SY", "\x1f\x8bname", "\xfd7zXZ"):
        layer = f"l{ord(name[1])}"
        driver.apply_diff(layer, None, stream(tar(E(name, data=b"x"))))
        assert driver.has_layer(layer)
    with pytest.raises(InvalidLayer, match="bzip2"):
        driver.apply_diff("bz", None, stream(bz2.compress(BASE)))


def test_stack_deeper_than_overlayfs_allows_is_a_clear_error(st_root):
    from cais.storage.overlay import mount_deep
    dirs = [os.path.join(st_root, d) for d in ("lower", "upper", "work", "merged")]
    for d in dirs:
        os.mkdir(d)
    with pytest.raises(StorageError, match="overlay of 501 layers .*too many lower directories"):
        mount_deep(dirs[3], [dirs[0]] * 501, dirs[1], dirs[2])
    assert not os.path.ismount(dirs[3])


def test_auto_selection_picks_vfs_on_overlayfs(st_root):
    """Where root is itself on OverlayFS (docker-in-docker), an upper dir cannot live there: vfs."""
    from cais.linux import mount as mnt
    for d in ("lower", "upper", "work", "merged"):
        os.mkdir(os.path.join(st_root, d))
    mnt.mount("cais-st-overlay", os.path.join(st_root, "merged"), "overlay", 0,
              f"lowerdir={st_root}/lower,upperdir={st_root}/upper,workdir={st_root}/work")
    try:
        driver = open_driver(os.path.join(st_root, "merged", "data"))
        assert driver.name == "vfs"
        driver.apply_diff("base", None, stream(BASE))
        assert driver.has_layer("base")
        assert not [n for n in os.listdir(os.path.join(st_root, "merged", "data")) if n.startswith(".tmp-")]
    finally:
        mnt.umount(os.path.join(st_root, "merged"), mnt.MNT_DETACH)


def test_a_volatile_layer_is_mounted_volatile_and_can_be_mounted_again(st_root):
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    driver.create_rw("c", "base", volatile=True)
    for _ in range(2):  # the second mount finds OverlayFS's marker of the first
        root = driver.mount("c")
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {root} " in line)
        assert "volatile" in line.split(" - ")[1]
        with open(os.path.join(root, "kept"), "a") as f:
            f.write("x")
        driver.unmount("c")
    assert read(os.path.join(driver.mount("c"), "kept")) == b"xx"
    driver.remove_rw("c")


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_containers_directory_is_a_top_directory_on_ext4(st_root, name):
    """chattr +T: each container's directory in a block group of its own (cais/linux/inodeflags.py)."""
    driver = open_driver(st_root, name)
    if subprocess.run(["stat", "-f", "-c", "%T", st_root], capture_output=True, text=True).stdout.strip() != "ext2/ext3":
        pytest.skip("not on ext2/3/4")
    flags = subprocess.run(["lsattr", "-d", os.path.join(driver.root, "containers")], capture_output=True,
                           text=True, check=True).stdout.split()[0]
    assert "T" in flags
    driver.create_rw("c", None)
    assert "T" not in subprocess.run(["lsattr", "-d", os.path.join(driver.root, "containers", "c")],
                                     capture_output=True, text=True, check=True).stdout.split()[0]


def test_overlay_makes_the_next_containers_directory_ahead(st_root):
    driver = open_driver(st_root, "overlay")
    driver.apply_diff("base", None, stream(BASE))
    containers = os.path.join(driver.root, "containers")

    def spares() -> list[str]:
        reclaim.wait_idle()
        return sorted(n for n in os.listdir(containers) if n.startswith("."))

    driver.create_rw("a", "base")
    driver.remove_rw("a")
    assert spares() == []  # a process that makes one container (the CLI's engine) makes no spare
    driver.create_rw("b", "base", volatile=True)
    assert spares() == []  # made after a removal: not while a start may be under way
    driver.remove_rw("b")
    [spare] = spares()
    assert sorted(os.listdir(os.path.join(containers, spare))) == ["diff", "merged", "work"]
    driver.create_rw("c", "base")
    assert not os.path.exists(os.path.join(containers, spare))  # c is it
    assert not os.path.exists(os.path.join(containers, "c", "volatile"))
    root = driver.mount("c")
    assert read(os.path.join(root, "etc/motd")) == b"hello\n"
    write(os.path.join(root, "new"), b"x")
    assert driver.changes("c") == [Change("A", "/new")]
    driver.remove_rw("c")
    assert len(spares()) == 1
    del driver
    gc.collect()
    assert spares() == []  # discarded with the driver
