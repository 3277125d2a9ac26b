"""RootDir (paths resolved by the kernel inside a directory) and MountView (binds in a private mount
namespace), against the real kernel: hostile symlinks never lead out, races neither."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from collections.abc import Iterator

import pytest

from cais.storage.mountview import Bind, open_view
from cais.storage.rootdir import RootDir, read_text


@pytest.fixture
def host() -> Iterator[str]:
    """A host directory holding a secret no resolution inside the root may reach."""
    with tempfile.TemporaryDirectory(prefix="cais-rd-host-", dir="/tmp") as d:
        with open(os.path.join(d, "secret"), "w") as f:
            f.write("cais-rd-host-secret")
        yield d


@pytest.fixture
def root(tmp_root: str, host: str) -> Iterator[str]:
    """An image-like tree full of hostile symlinks."""
    r = os.path.join(tmp_root, "root")
    os.makedirs(os.path.join(r, "etc"))
    os.makedirs(os.path.join(r, "real", "sub"))
    with open(os.path.join(r, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:inside:/root:/bin/sh\n")
    links = {"abs": "/", "hostlink": host, "secret": f"{host}/secret", "up": "../../../../../../..",
             "uphost": "../../../../../.." + host, "loop": "loop", "loop1": "loop2", "loop2": "loop1",
             "dangling": "/nowhere/x", "reallink": "real", "real/sub/back": "../../etc", "proc": "/proc/self/root"}
    for name, target in links.items():
        os.symlink(target, os.path.join(r, name))
    yield r


def test_absolute_and_dotdot_symlinks_stay_inside(root: str, host: str) -> None:
    with RootDir.at(root) as r:
        for path in ("/abs/etc/passwd", "/up/etc/passwd", "/real/sub/back/passwd", "../../../etc/passwd",
                     "/reallink/../../../etc/passwd", "abs/abs/up/etc/passwd"):
            assert r.read_text(path) == "root:x:0:0:inside:/root:/bin/sh\n", path
        for path in ("/hostlink/secret", "/secret", "/uphost/secret", f"/abs{host}/secret", f"/up{host}/secret"):
            with pytest.raises(FileNotFoundError):
                r.open(path)
            assert r.read_text(path) is None
        assert r.resolve("/secret") == f"{host}/secret"  # the link's target, inside the root
        assert r.host_path("/secret") == os.path.join(root, host.lstrip("/"), "secret")


def test_loops_and_magic_links_are_errors_not_escapes(root: str) -> None:
    with RootDir.at(root) as r:
        for path in ("/loop", "/loop1/x", "/loop/x"):
            with pytest.raises(OSError) as e:
                r.open(path)
            assert e.value.errno == errno.ELOOP
        with pytest.raises(OSError):
            r.resolve("/loop1")
        # /proc -> /proc/self/root is itself inside the root: a loop, never the host's /proc
        with pytest.raises(OSError) as e:
            r.open("/proc/etc/passwd")
        assert e.value.errno == errno.ELOOP


def test_last_component_followed_only_when_asked(root: str) -> None:
    with RootDir.at(root) as r:
        assert stat.S_ISLNK(r.lstat("/reallink").st_mode)
        assert stat.S_ISDIR(r.stat("/reallink").st_mode)
        assert stat.S_ISLNK(r.lstat("/reallink/sub/back").st_mode)  # parents followed, the last not
        assert r.resolve("/reallink/sub/back", follow=False) == "/real/sub/back"
        assert r.resolve("/reallink/sub/back") == "/etc"
        assert r.resolve("/dangling") == "/nowhere/x"  # a dangling link leads to its target
        assert r.resolve("/dangling", follow=False) == "/dangling"
        assert r.resolve("/missing/a/../b") == "/missing/b"
        fd, name = r.parent("/reallink/sub/back")
        try:
            assert name == "back" and r.path_of(fd) == "/real/sub"
        finally:
            os.close(fd)


def test_makedirs_through_symlinks_lands_inside(root: str, host: str) -> None:
    with RootDir.at(root) as r:
        with pytest.raises(FileNotFoundError):  # a dangling symlink is not made into a directory
            r.makedirs("/hostlink/made")
        os.close(r.makedirs("/reallink/sub/made", 0o750, 12, 34))
        os.close(r.makedirs(f"/up{host}/made2"))
        with pytest.raises(NotADirectoryError):
            r.makedirs("/etc/passwd/x")
    assert os.listdir(host) == ["secret"]
    st = os.stat(os.path.join(root, "real", "sub", "made"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 12, 34)
    assert os.path.isdir(os.path.join(root, host.lstrip("/"), "made2"))


def test_read_text_of_a_path_string(root: str) -> None:
    assert read_text(root, "/abs/etc/passwd") == "root:x:0:0:inside:/root:/bin/sh\n"
    assert read_text(root, "/secret") is None
    assert read_text(os.path.join(root, "nope"), "/etc/passwd") is None


def test_no_xdev_refuses_other_mounts(root: str) -> None:
    with RootDir.at("/", cross_mounts=False) as r, pytest.raises(OSError) as e:
        r.open("/proc/self")
    assert e.value.errno == errno.EXDEV


def test_a_directory_swapped_for_a_symlink_in_a_loop_never_leads_out(root: str, host: str) -> None:
    """The race user-space walks lose: between resolving /d and opening /d/<host>/secret, /d
    becomes a symlink to /. Resolved by the kernel in one call, the swap only ever leads inside."""
    decoy = os.path.join(root, "d", host.lstrip("/"))
    os.makedirs(decoy)
    with open(os.path.join(decoy, "secret"), "w") as f:
        f.write("decoy")
    stop = threading.Event()

    def swap() -> None:
        d, parked = os.path.join(root, "d"), os.path.join(root, "parked")
        while not stop.is_set():
            os.rename(d, parked)
            os.symlink("/", d)
            os.unlink(d)
            os.rename(parked, d)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen = set()
    try:
        with RootDir.at(root) as r:
            for _ in range(3000):
                seen.add(r.read_text(f"/d{host}/secret"))
                with pytest.raises(OSError):  # through the moment / is the link: inside, it is nothing
                    r.open(f"/d{host}/secret/x")
    finally:
        stop.set()
        swapper.join()
    assert "cais-rd-host-secret" not in seen
    assert "decoy" in seen


def test_mount_view_binds_are_seen_through_the_fd_only(tmp_root: str, host: str) -> None:
    rootfs = os.path.join(tmp_root, "rootfs")
    os.makedirs(os.path.join(rootfs, "data"))
    with open(os.path.join(rootfs, "file"), "w") as f:
        f.write("f")
    vol = os.path.join(tmp_root, "vol")
    os.makedirs(os.path.join(vol, "sub"))
    with open(os.path.join(vol, "sub", "v"), "w") as f:
        f.write("volume")
    with open(os.path.join(tmp_root, "hostfile"), "w") as f:
        f.write("bound file")
    before = _mountinfo(tmp_root)
    view = open_view(rootfs, [Bind("/data", vol), Bind("/ro", vol, readonly=True),
                              Bind("/etc/one", os.path.join(tmp_root, "hostfile")),
                              Bind("/abs/sub", vol, subpath="sub")],
                     lambda source, sub: os.open(os.path.join(source, sub), os.O_PATH | os.O_CLOEXEC))
    try:
        r = view.root
        assert r.read_text("/data/sub/v") == "volume"
        assert r.read_text("/etc/one") == "bound file"
        assert r.read_text("/abs/sub/v") == "volume"
        result: list[str | None] = []
        t = threading.Thread(target=lambda: result.append(r.read_text("/data/sub/v")))  # any thread
        t.start()
        t.join()
        assert result == ["volume"]
        fd = r.open("/ro", os.O_PATH | os.O_DIRECTORY)
        try:
            with pytest.raises(OSError) as e:
                os.mkdir("x", dir_fd=fd)
            assert e.value.errno == errno.EROFS
        finally:
            os.close(fd)
        assert _mountinfo(tmp_root) == before == []  # nothing in the daemon's mount table
        assert os.listdir(os.path.join(rootfs, "data")) == []
        # missing mount points were made in the root file system, as docker does
        assert os.path.isfile(os.path.join(rootfs, "etc", "one"))
    finally:
        view.close()
    assert _mountinfo(tmp_root) == before


def _mountinfo(under: str) -> list[str]:
    """The daemon's mounts below `under` (other tests on the machine mount elsewhere meanwhile)."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if under in line]
