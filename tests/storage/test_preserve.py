"""What a layer holds survives unpacking exactly as GNU tar itself restores it: owners, modes with
setuid/setgid/sticky bits, xattrs and file capabilities, hard links, symlinks, device nodes, FIFOs,
long and non-ASCII names, and mtimes (directories' set after their contents). And an exported
diff unpacks with GNU tar into the same tree."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import subprocess

import pytest

from tests.storage.layers import write

TAR_XATTRS = ["--xattrs", "--xattrs-include=*", "--numeric-owner"]
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # VFS_CAP_REVISION_2, effective


def build_tree(root: str) -> None:
    os.makedirs(os.path.join(root, "d/deeper"))
    write(os.path.join(root, "d/suid"), b"\x7fELF suid")
    os.chmod(os.path.join(root, "d/suid"), 0o4755)
    write(os.path.join(root, "sgid"), b"sgid")
    os.chmod(os.path.join(root, "sgid"), 0o2711)
    os.mkdir(os.path.join(root, "tmp"))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "d"), 0o2750)
    os.chown(os.path.join(root, "d"), 1000, 1001)
    write(os.path.join(root, "a"), b"linked content")
    os.link(os.path.join(root, "a"), os.path.join(root, "d/b"))
    os.link(os.path.join(root, "a"), os.path.join(root, "d/deeper/c"))
    os.symlink("d/suid", os.path.join(root, "sym"))
    os.symlink("/nonexistent/target", os.path.join(root, "dangling"))
    os.lchown(os.path.join(root, "sym"), 7, 8)
    os.mknod(os.path.join(root, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(os.path.join(root, "loop9"), stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mkfifo(os.path.join(root, "fifo"), 0o640)
    long_dir = os.path.join(root, "long-" + "x" * 90)
    os.mkdir(long_dir)
    write(os.path.join(long_dir, "name-" + "y" * 120), b"long")
    write(os.path.join(root, "ünïcødé ✓"), b"utf-8")
    write(os.path.join(root, "nobody"), b"")
    os.chown(os.path.join(root, "nobody"), 65534, 65534)
    os.chmod(os.path.join(root, "nobody"), 0o400)
    write(os.path.join(root, "big"), os.urandom(3 << 20) + b"tail")
    write(os.path.join(root, "capped"), b"ping")
    os.setxattr(os.path.join(root, "capped"), "security.capability", CAP_NET_RAW)
    os.setxattr(os.path.join(root, "a"), "user.note", b"hello \xff binary")
    os.setxattr(os.path.join(root, "d"), "trusted.cais", b"dir xattr")
    stamp = 1_500_000_000_123_456_789
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            stamp += 1_000_000_007
            os.utime(p, ns=(stamp, stamp), follow_symlinks=False)


def describe(root: str, mtime_ns: bool = True) -> dict[str, tuple]:
    """Everything about a tree that unpacking must keep (the root directory itself excluded)."""
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False) for k in sorted(os.listxattr(p, follow_symlinks=False))}
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            out[rel] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_size if content else None,
                        st.st_mtime_ns if mtime_ns else st.st_mtime_ns // 1_000_000_000, st.st_rdev,
                        os.readlink(p) if stat.S_ISLNK(st.st_mode) else None, xattrs, content)
    out["<hard links>"] = tuple(sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1))
    return out


@pytest.fixture
def source_tar(st_root):
    src = os.path.join(st_root, "src")
    os.mkdir(src)
    build_tree(src)
    layer = os.path.join(st_root, "layer.tar")
    subprocess.run(["tar", *TAR_XATTRS, "--format=posix", "-C", src, "-cf", layer, "."], check=True)
    by_tar = os.path.join(st_root, "by-tar")
    os.mkdir(by_tar)
    subprocess.run(["tar", *TAR_XATTRS, "-xpf", layer, "-C", by_tar], check=True)
    return src, layer, by_tar


def test_unpack_matches_gnu_tar(driver, source_tar):
    src, layer, by_tar = source_tar
    expected = describe(by_tar)
    assert expected["<hard links>"] == (("a", "d/b", "d/deeper/c"),)
    assert expected["capped"][7] == {"security.capability": CAP_NET_RAW}
    with open(layer, "rb") as f:
        driver.apply_diff("l", None, f)
    driver.create_rw("c", "l")
    try:
        got = describe(driver.mount("c"))
    finally:
        driver.unmount("c")
    assert got == expected


def test_export_unpacks_with_gnu_tar(driver, source_tar, st_root):
    src, _, _ = source_tar
    driver.create_rw("c", None)
    try:
        rootfs = driver.mount("c")
        subprocess.run(["cp", "-a", f"{src}/.", rootfs], check=True)
        out_path = os.path.join(st_root, "export.tar")
        with open(out_path, "wb") as out:
            driver.export_diff("c", out)
    finally:
        driver.unmount("c")
    back = os.path.join(st_root, "back")
    os.mkdir(back)
    subprocess.run(["tar", *TAR_XATTRS, "-xpf", out_path, "-C", back], check=True)
    assert describe(back, mtime_ns=False) == describe(src, mtime_ns=False)
    shutil.rmtree(back)
