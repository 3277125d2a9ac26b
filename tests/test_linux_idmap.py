"""Idmapped mounts on the real kernel: a user namespace carrying a mapping, a detached idmapped
copy of a tmpfs and of an ext4 tree, attached; refused where the file system cannot."""

import errno
import os

import pytest

from cais.linux import fsmount, idmap
from cais.linux import mount as m


def test_idmapped_tree_shows_and_writes_through_the_mapping(tmp_root):
    userns = idmap.user_namespace([(0, 300000, 65536)], [(0, 400000, 65536)])
    try:
        assert os.readlink(f"/proc/self/fd/{userns}") != os.readlink("/proc/self/ns/user")
        tmpfs = os.path.join(tmp_root, "tmpfs")
        os.mkdir(tmpfs)
        m.mount("cais-un-tmpfs", tmpfs, "tmpfs", 0, "size=1m")
        for tree in (tmp_root, tmpfs):  # tmp_root is on / (ext4 here)
            with open(os.path.join(tree, "f"), "w"):
                pass
            os.chown(os.path.join(tree, "f"), 7, 8)
            target = os.path.join(tmp_root, f"view-{os.path.basename(tree)}")
            os.mkdir(target)
            fd = fsmount.idmapped_tree(tree, userns)
            try:
                fsmount.move_mount_to(fd, target)
            finally:
                os.close(fd)
            try:
                st = os.stat(os.path.join(target, "f"))
                assert (st.st_uid, st.st_gid) == (300007, 400008)
                os.chown(os.path.join(target, "f"), 300001, 400002)  # written back unmapped
                st = os.stat(os.path.join(tree, "f"))
                assert (st.st_uid, st.st_gid) == (1, 2)
            finally:
                m.umount(target, m.MNT_DETACH)
    finally:
        if os.path.ismount(os.path.join(tmp_root, "tmpfs")):
            m.umount(os.path.join(tmp_root, "tmpfs"), m.MNT_DETACH)
        os.close(userns)


def test_idmap_refused_where_the_file_system_cannot():
    userns = idmap.user_namespace([(0, 300000, 65536)], [(0, 300000, 65536)])
    try:
        with pytest.raises(OSError) as e:
            fsmount.idmapped_tree("/proc", userns)
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(userns)
