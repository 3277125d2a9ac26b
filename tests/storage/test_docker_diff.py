"""`changes()` against the real thing: the same edits made in a dockerd container (`docker diff`)
and in a cais container's rootfs give the same list, for both drivers."""

from __future__ import annotations

import io
import subprocess

import pytest

from tests.peers import dockerd

EDITS = """set -e
echo hi > /etc/motd
rm /bin/cat
mkdir -p /srv/www && echo x > /srv/www/index.html
ln -s /srv /srvlink
chmod 700 /home
echo more >> /usr/share/note
rm -rf /var && mkdir /var && echo n > /var/new
"""


@pytest.fixture(scope="module")
def image_tar(busybox_dir):
    subprocess.run(["mkdir", "-p", f"{busybox_dir}/usr/share", f"{busybox_dir}/var/lib"], check=True)
    subprocess.run(["sh", "-c", f"echo note > {busybox_dir}/usr/share/note && echo s > {busybox_dir}/var/lib/state"],
                   check=True)
    return subprocess.run(["tar", "--numeric-owner", "-C", busybox_dir, "-c", "."], check=True,
                          capture_output=True).stdout


@pytest.fixture(scope="module")
def docker_changes(image_tar):
    with dockerd() as d:
        d.docker("import", "-", "cais-st-bb:diff", input=image_tar)
        d.docker("run", "--name", "cais-st-diff", "--network", "none", "cais-st-bb:diff", "sh", "-c", EDITS)
        out = d.docker("diff", "cais-st-diff").stdout.decode()
    return sorted(out.split("\n")[:-1])


@pytest.mark.peers
def test_changes_match_docker_diff(driver, image_tar, docker_changes):
    driver.apply_diff("bb", None, io.BytesIO(image_tar))
    driver.create_rw("c", "bb")
    try:
        root = driver.mount("c")
        subprocess.run(["chroot", root, "/bin/sh", "-c", EDITS], check=True)
        ours = sorted(str(c) for c in driver.changes("c"))
    finally:
        driver.unmount("c")
    assert ours == docker_changes
