import os

from cais.image.bootstrap import busybox_rootfs


def test_busybox_rootfs_has_shell_and_applets(tmp_root):
    root = busybox_rootfs(os.path.join(tmp_root, "rootfs"))
    assert os.access(os.path.join(root, "bin", "busybox"), os.X_OK)
    assert os.readlink(os.path.join(root, "bin", "sh")) == "/bin/busybox"
    assert os.path.islink(os.path.join(root, "bin", "ls"))
    assert os.stat(os.path.join(root, "tmp")).st_mode & 0o7777 == 0o1777
