"""Copy-up from an image's rootfs into an empty volume: content, owners, modes, xattrs, links —
and never a step outside the rootfs."""

from __future__ import annotations

import os
import stat

from cais.volume import copyup


def _tree(top: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            xattrs = {a: os.getxattr(p, a, follow_symlinks=False) for a in os.listxattr(p, follow_symlinks=False)}
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, data, xattrs,
                                            st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None)
    return out


def test_copy_up_preserves_everything(vo_dir: str) -> None:
    rootfs, vol = os.path.join(vo_dir, "rootfs"), os.path.join(vo_dir, "vol")
    src = os.path.join(rootfs, "srv", "app")
    os.makedirs(os.path.join(src, "sub", "deeper"))
    os.mkdir(vol)
    with open(os.path.join(src, "conf"), "w") as f:
        f.write("x=1\n")
    os.chown(os.path.join(src, "conf"), 1234, 5678)
    os.chmod(os.path.join(src, "conf"), 0o4750)
    os.setxattr(os.path.join(src, "conf"), "user.cais", b"vo")
    with open(os.path.join(src, "sub", "deeper", "big"), "wb") as f:
        f.write(os.urandom(300_000))
    os.symlink("../conf", os.path.join(src, "sub", "link"))
    os.symlink("/etc/shadow", os.path.join(src, "abs-link"))
    os.link(os.path.join(src, "conf"), os.path.join(src, "sub", "hard"))
    os.mkfifo(os.path.join(src, "fifo"))
    os.chown(os.path.join(src, "sub"), 42, 43)
    os.chmod(os.path.join(src, "sub"), 0o1777)
    os.chmod(src, 0o750)
    os.chown(src, 7, 8)

    assert copyup.copy_up(rootfs, "/srv/app", vol) is True
    assert _tree(vol) == _tree(src)
    assert os.stat(os.path.join(vol, "conf")).st_ino == os.stat(os.path.join(vol, "sub", "hard")).st_ino
    assert (os.stat(vol).st_mode & 0o7777, os.stat(vol).st_uid, os.stat(vol).st_gid) == (0o750, 7, 8)
    assert copyup.copy_up(rootfs, "/srv/app", vol) is False  # not empty any more: left alone


def test_copy_up_stays_inside_the_rootfs(vo_dir: str) -> None:
    rootfs, vol = os.path.join(vo_dir, "rootfs"), os.path.join(vo_dir, "vol")
    os.makedirs(os.path.join(rootfs, "inside"))
    os.mkdir(vol)
    secret = os.path.join(vo_dir, "host-secret")
    os.mkdir(secret)
    with open(os.path.join(secret, "key"), "w") as f:
        f.write("do not copy")
    # the image's /data is a symlink to the host's directory: resolved in the rootfs, it is missing
    os.symlink(secret, os.path.join(rootfs, "data"))
    os.symlink("../../../../../../" + secret.lstrip("/"), os.path.join(rootfs, "inside", "up"))
    assert copyup.copy_up(rootfs, "/data", vol) is False
    assert copyup.copy_up(rootfs, "/inside/up", vol) is False
    assert os.listdir(vol) == []
    # a symlink inside the rootfs resolves inside it
    os.makedirs(os.path.join(rootfs, "real"))
    with open(os.path.join(rootfs, "real", "f"), "w") as f:
        f.write("ok")
    os.symlink("/real", os.path.join(rootfs, "alias"))
    assert copyup.copy_up(rootfs, "/alias", vol) is True
    assert os.listdir(vol) == ["f"]


def test_nothing_to_copy(vo_dir: str) -> None:
    rootfs, vol = os.path.join(vo_dir, "rootfs"), os.path.join(vo_dir, "vol")
    os.makedirs(rootfs)
    os.mkdir(vol)
    with open(os.path.join(rootfs, "file"), "w") as f:
        f.write("a file, not a directory")
    assert copyup.copy_up(rootfs, "/missing", vol) is False
    assert copyup.copy_up(rootfs, "/file", vol) is False
    assert copyup.source_is_dir(rootfs, "/file") is False
    assert copyup.source_is_dir(rootfs, "/missing") is None
