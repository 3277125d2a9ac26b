import errno
import os

import pytest

from cais.linux import mount as m


def test_tmpfs_mount_and_umount(tmp_root):
    m.mount("cais-test", tmp_root, "tmpfs", m.MS_NOSUID, "size=1m")
    try:
        with open(os.path.join(tmp_root, "f"), "w") as f:
            f.write("x")
        with open("/proc/self/mountinfo") as f:
            assert any(line.split()[4] == tmp_root for line in f)
    finally:
        m.umount(tmp_root, m.MNT_DETACH)
    assert not os.path.exists(os.path.join(tmp_root, "f"))


def test_mount_error_is_oserror_with_errno(tmp_root):
    with pytest.raises(OSError) as e:
        m.mount(None, os.path.join(tmp_root, "missing"), "tmpfs")
    assert e.value.errno == errno.ENOENT
