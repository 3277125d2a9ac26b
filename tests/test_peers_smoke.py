"""The peers the suite compares against can start and stop cleanly here."""

import pytest

from tests.peers import dockerd


@pytest.mark.peers
def test_dockerd_starts_and_loads_an_image(busybox_dir, tmp_root):
    import os
    import subprocess
    tar = os.path.join(tmp_root, "rootfs.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)
    with dockerd() as d:
        with open(tar, "rb") as f:
            d.docker("import", "-", "cais-test/busybox:latest", input=f.read())
        out = d.docker("run", "--rm", "--network=none", "cais-test/busybox:latest", "echo", "hi").stdout
        assert out == b"hi\n"
