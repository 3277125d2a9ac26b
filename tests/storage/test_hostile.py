"""A corpus of hostile layers: none may write, link or delete outside the layer's own directory.

Every case runs against both drivers; a sentinel tree next to the driver's directory (which the
absolute and `../` paths aim at) is snapshotted before and compared after. A case is either refused
with a clear one-line error (and leaves no layer behind) or neutralised (its effect stays inside).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading

import pytest

from cais.storage import InvalidLayer, LayerTooLarge
from cais.storage.tarstream import BLOCK
from tests.storage.layers import E, read, stream, tar, write

UP = "../" * 12


@pytest.fixture
def sentinel(st_root):
    path = os.path.join(st_root, "sentinel")
    os.makedirs(os.path.join(path, "dir"))
    write(os.path.join(path, "file"), "precious\n")
    write(os.path.join(path, "dir/inner"), "inner\n")
    os.symlink("file", os.path.join(path, "link"))
    return path


def snapshot(root: str, skip: str) -> dict[str, tuple]:
    """Every path under `root` but `skip`, with its type, mode, owner, size, mtime and content."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) != skip]
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = read(p) if os.path.isfile(p) and not os.path.islink(p) else None
            out[p] = (st.st_mode, st.st_uid, st.st_nlink, st.st_size, st.st_mtime_ns, content)
    return out


def refused(case: list[E], s: str) -> list:
    return [case, s]


def hostile_cases(s: str) -> dict[str, tuple[list[list[E]], str | None]]:
    """name -> (layers, expected error or None when neutralised). `s` is the sentinel's absolute path."""
    rel = s.lstrip("/")
    return {
        "dotdot file": ([[E(f"{UP}{rel}/pwned", data=b"x")]], "escapes the layer"),
        "dotdot inside path": ([[E("a", "dir"), E(f"a/{UP}{rel}/pwned", data=b"x")]], "escapes the layer"),
        "dotdot overwrite": ([[E(f"{UP}{rel}/file", data=b"owned")]], "escapes the layer"),
        "dotdot dir": ([[E(f"{UP}{rel}/newdir", "dir")]], "escapes the layer"),
        "dotdot long pax name": ([[E(f"{'d/' * 60}{'../' * 61}{UP}{rel}/pwned", data=b"x")]], "escapes the layer"),
        "absolute file": ([[E(f"{s}/pwned", data=b"x"), E(f"{s}/file", data=b"owned")]], None),
        "absolute symlink then write through it": ([[E("evil", "symlink", target=s), E("evil/pwned", data=b"x")]],
                                                   "refusing to write through it"),
        "relative symlink then write through it": ([[E("evil", "symlink", target=f"{UP}{rel}"),
                                                     E("evil/file", data=b"owned")]], "refusing to write through it"),
        "symlink to file then overwrite": ([[E("evil", "symlink", target=f"{s}/file"), E("evil", data=b"owned")]],
                                           None),
        "symlink to dir then mkdir through it": ([[E("evil", "symlink", target=s), E("evil/dir/sub", "dir")]],
                                                 "refusing to write through it"),
        "symlink then symlink through it": ([[E("evil", "symlink", target=s),
                                              E("evil/link2", "symlink", target="/")]], "refusing to write through it"),
        "symlink then hardlink through it": ([[E("evil", "symlink", target=s), E("evil/hl", "hardlink", target="x")]],
                                             "refusing to write through it"),
        "symlink then device through it": ([[E("evil", "symlink", target=s), E("evil/null", "char", dev=(1, 3))]],
                                           "refusing to write through it"),
        "lower-layer symlink, write in a later layer": ([[E("evil", "symlink", target=s)],
                                                         [E("evil/pwned", data=b"x"), E("evil/file", data=b"owned")]],
                                                        "?"),
        "lower-layer symlink chain, write in a later layer": ([[E("a", "symlink", target="b"),
                                                                E("b", "symlink", target=f"{UP}{rel}")],
                                                               [E("a/file", data=b"owned")]], "?"),
        "symlink loop": ([[E("a", "symlink", target="b"), E("b", "symlink", target="a"), E("a/x", data=b"x")]],
                         "symbolic links"),
        "hardlink to dotdot": ([[E("hl", "hardlink", target=f"{UP}{rel}/file")]], "escapes the layer"),
        "hardlink to absolute outside": ([[E("hl", "hardlink", target=f"{s}/file")]], "not in this layer"),
        "hardlink through symlink": ([[E("evil", "symlink", target=s), E("hl", "hardlink", target="evil/file")]],
                                     "not in this layer"),
        "hardlink through lower-layer symlink": ([[E("evil", "symlink", target=s)],
                                                  [E("hl", "hardlink", target="evil/file")]], "not in this layer"),
        "hardlink to outside-pointing symlink, then write": (
            [[E("evil", "symlink", target=f"{s}/file"), E("hl", "hardlink", target="evil"),
              E("hl", data=b"owned")]], None),
        "whiteout dotdot": ([[E(".wh..."), E("x", data=b"x")]], "invalid whiteout"),
        "whiteout dotdot in dir": ([[E("a", "dir"), E("a/.wh...")]], "invalid whiteout"),
        "whiteout dot": ([[E(".wh..")]], "invalid whiteout"),
        "whiteout of path through dotdot": ([[E(f"{UP}{rel}/.wh.file")]], "escapes the layer"),
        "whiteout through absolute symlink": ([[E("evil", "symlink", target=s), E("evil/.wh.file")]], "?"),
        "whiteout through lower-layer symlink": ([[E("evil", "symlink", target=s)], [E("evil/.wh.file")]], "?"),
        "opaque through lower-layer symlink": ([[E("evil", "symlink", target=s)], [E("evil/.wh..wh..opq")]], "?"),
        "root as a symlink": ([[E("./", "symlink", target=s)]], "root must be a directory"),
        "nesting deeper than a tree walk can follow": ([[E("d/" * 600 + "f", data=b"x")]], "nested deeper than"),
        "path longer than PATH_MAX": ([[E(("n" * 250 + "/") * 20 + "f", data=b"x")]], "too long"),
        "NUL byte in a PAX path": ([[E("x", data=b"x", pax={"path": "evil\x00name"})]], "invalid entry"),
        "NUL byte in a symlink target": ([[E("s", "symlink", target="a", pax={"linkpath": "/etc\x00x"})]],
                                         "invalid entry"),
        "PAX path escaping": ([[E("innocent", data=b"x", pax={"path": f"{UP}{rel}/pwned"})]], "escapes the layer"),
        "PAX hard-link target escaping": ([[E("hl", "hardlink", target="a", pax={"linkpath": f"{UP}{rel}/file"})]],
                                          "escapes the layer"),
        "owner out of range": ([[E("x", data=b"x", pax={"uid": str(1 << 40)})]], "invalid entry"),
        "mtime out of range": ([[E("x", data=b"x", pax={"mtime": "1" + "0" * 30})]], "invalid entry"),
        "overlay xattr smuggled": ([[E("d", "dir", xattrs={"trusted.overlay.opaque": b"y",
                                                           "trusted.overlay.redirect": b"/etc"})]], None),
    }


CASES = hostile_cases("/SENTINEL")


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_layer(driver, st_root, sentinel, case):
    layers, expected = hostile_cases(sentinel)[case]
    before = snapshot(st_root, skip=driver.root)
    threads = set(threading.enumerate())
    parent = None
    error = None
    for i, entries in enumerate(layers):
        try:
            driver.apply_diff(f"l{i}", parent, stream(tar(*entries)))
        except InvalidLayer as e:
            error = str(e)
            assert not driver.has_layer(f"l{i}")
            break
        parent = f"l{i}"
    assert snapshot(st_root, skip=driver.root) == before, "the host changed"
    if expected is None:
        assert error is None
    elif expected != "?":  # "?": refusing and neutralising are both fine (the drivers differ)
        assert error is not None and expected in error, error
    if error is not None:
        assert "\n" not in error and len(error) < 400
    assert not set(threading.enumerate()) - threads, "a decompression or hashing thread was left running"
    for d in (driver.root + "/layers", driver.root + "/containers"):
        assert not [n for n in os.listdir(d) if n.startswith(".tmp-")], "a staging directory was left"
    if parent is not None:
        driver.create_rw("c", parent)
        try:
            root = driver.mount("c")
            for dirpath, _, _ in os.walk(root):
                assert os.listxattr(dirpath, follow_symlinks=False) == [] or driver.name == "vfs" or \
                    not any(x.startswith("trusted.overlay.r") for x in os.listxattr(dirpath))
        finally:
            driver.unmount("c")
    assert snapshot(st_root, skip=driver.root) == before, "the host changed"


def test_smuggled_overlay_xattrs_are_dropped(driver):
    driver.apply_diff("l", None, stream(tar(E("d", "dir", xattrs={"trusted.overlay.opaque": b"y",
                                                                 "user.kept": b"1"}))))
    driver.create_rw("c", "l")
    diff = os.path.join(driver.root, "layers", "l", "diff", "d")
    assert os.getxattr(diff, "user.kept") == b"1"
    with pytest.raises(OSError):
        os.getxattr(diff, "trusted.overlay.opaque")


def with_size(header: bytes, size: int) -> bytes:
    """A tar header claiming `size` bytes of data (checksum fixed up)."""
    h = bytearray(header[:BLOCK])
    h[124:136] = f"{size:011o}\0".encode()
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h) + header[BLOCK:]


def _gzip_bomb(size: int) -> bytes:
    """A tar holding one file of `size` zero bytes, gzipped: ~1000x smaller than what it expands to."""
    out = io.BytesIO()
    comp = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9)
    comp.write(with_size(tar(E("bomb", data=b""))[:BLOCK], size))
    zeros = b"\0" * (1 << 20)
    for _ in range(size >> 20):
        comp.write(zeros)
    comp.write(b"\0" * 1024)
    comp.close()
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = _gzip_bomb(128 << 20)
    assert len(data) < 1 << 20
    return data


def test_decompression_bomb_stopped(driver, bomb):
    threads = set(threading.enumerate())
    with pytest.raises(LayerTooLarge, match="beyond its limit of 16777216 bytes"):
        driver.apply_diff("bomb", None, stream(bomb), max_size=16 << 20)
    assert not set(threading.enumerate()) - threads
    assert not driver.has_layer("bomb")
    assert not [n for n in os.listdir(driver.root + "/layers") if n.startswith(".tmp-")]


def test_layer_over_max_size(driver):
    data = tar(E("big", data=b"x" * 100_000))
    with pytest.raises(LayerTooLarge):
        driver.apply_diff("big", None, stream(data), max_size=50_000)
    assert driver.apply_diff("big", None, stream(data), max_size=len(data)).tar_size == len(data)


def test_huge_size_field_without_data(driver):
    data = with_size(tar(E("f", data=b"abc")), 1 << 32)
    with pytest.raises(InvalidLayer, match="truncated"):
        driver.apply_diff("l", None, stream(data))


def test_metadata_headers_cannot_exhaust_memory(driver):
    headers = b"".join(tarfile.TarInfo.create_pax_global_header({f"cais.pad{i}": "p" * 200_000})
                       for i in range(8))  # global PAX headers accumulate
    with pytest.raises(InvalidLayer, match="metadata headers add up to more than"):
        driver.apply_diff("l", None, stream(headers + tar(E("f", data=b"x"))))


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_inode_bomb_stopped(few_inodes, name):
    from cais.storage import open_driver
    driver = open_driver(few_inodes, name)
    bomb = gzip.compress(tar(*[E(f"d{i // 1000}/f{i}") for i in range(6_000)]))
    assert len(bomb) < 200_000
    with pytest.raises(InvalidLayer, match="inodes|No space left"):
        driver.apply_diff("bomb", None, stream(bomb))
    assert not driver.has_layer("bomb")
    assert os.statvfs(few_inodes).f_favail > 2500  # the half-made layer is gone


def test_negative_size_field_refused(driver):
    data = bytearray(tar(E("f", data=b"abc")))
    data[124:136] = b"-0000000001\0"
    data[148:156] = b" " * 8
    data[148:156] = f"{sum(data[:BLOCK]):06o}\0 ".encode()
    with pytest.raises(InvalidLayer, match="invalid size"):
        driver.apply_diff("l", None, stream(bytes(data)))
