"""Layers made by dockerd itself (`docker commit` of containers that add, change, hard-link,
delete and re-create), taken from `docker save`, unpacked by each cais driver: the rootfs equals
the one docker exports for the same image."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from tests.peers import dockerd
from tests.storage.test_preserve import describe

STEPS = [
    "mkdir -p /data/sub /data/keep && echo a > /data/a && echo b > /data/sub/b && echo k > /data/keep/k"
    " && ln /data/a /data/hard && ln -s a /data/sym && chmod 4755 /data/a && mkfifo /data/fifo"
    " && mknod /data/null c 1 3 && chown 1000:1000 /data/sub && chmod 1777 /data/keep"
    " && echo h > /data/h1 && ln /data/h1 /data/h2",
    "rm /data/sub/b && rm -rf /usr/share && mkdir -p /usr/share && echo new > /usr/share/new && rm /bin/cat"
    " && echo more >> /data/a && touch -d @1500000000 /data/keep/k",
    "rm -rf /data/keep && echo back > /data/sub/b && mkdir /data/keep && rm /data/sym && mkdir /data/sym",
]
# what docker adds to every container (its "init" layer), and the directories holding them
DOCKER_INIT = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", "dev/console",
               "dev/pts", "dev/shm", "proc", "sys"}
TOUCHED_BY_INIT = {"etc", "dev"}


@pytest.fixture(scope="module")
def docker_image(busybox_dir, tmp_path_factory):
    """(layer tars from `docker save`, directory holding `docker export` of the image, extracted)."""
    top = str(tmp_path_factory.mktemp("cais-st-docker-"))
    base = subprocess.run(["tar", "--numeric-owner", "-C", busybox_dir, "-c", "."], check=True,
                          capture_output=True).stdout
    with dockerd() as d:
        d.docker("import", "-", "cais-st-rootfs:0", input=base)
        for i, script in enumerate(STEPS):
            d.docker("run", "--name", f"cais-st-step{i}", "--network", "none", f"cais-st-rootfs:{i}",
                     "sh", "-c", script)
            d.docker("commit", f"cais-st-step{i}", f"cais-st-rootfs:{i + 1}")
        last = f"cais-st-rootfs:{len(STEPS)}"
        d.docker("save", "-o", f"{top}/saved.tar", last)
        d.docker("create", "--name", "cais-st-export", last, "true")
        d.docker("export", "-o", f"{top}/exported.tar", "cais-st-export")
    saved = os.path.join(top, "saved")
    os.mkdir(saved)
    with tarfile.open(f"{top}/saved.tar") as t:
        t.extractall(saved, filter="fully_trusted")
    with open(os.path.join(saved, "manifest.json")) as f:
        layers = [os.path.join(saved, name) for name in json.load(f)[0]["Layers"]]
    exported = os.path.join(top, "exported")
    os.mkdir(exported)
    subprocess.run(["tar", "--numeric-owner", "-xpf", f"{top}/exported.tar", "-C", exported], check=True)
    yield layers, exported
    subprocess.run(["rm", "-rf", top], check=False)


def _comparable(tree: dict[str, tuple]) -> dict[str, tuple]:
    out = {}
    for path, info in tree.items():
        if path in DOCKER_INIT or any(path.startswith(p + "/") for p in DOCKER_INIT):
            continue
        if path in TOUCHED_BY_INIT:
            info = info[:4] + (None,) + info[5:]  # docker's init layer changed their mtimes
        out[path] = info
    return out


@pytest.mark.peers
def test_rootfs_of_docker_layers_equals_docker_export(driver, docker_image):
    layers, exported = docker_image
    assert len(layers) == 1 + len(STEPS)
    parent = None
    for i, path in enumerate(layers):
        with open(path, "rb") as f:
            driver.apply_diff(f"l{i}", parent, f)
        parent = f"l{i}"
    driver.create_rw("c", parent)
    try:
        ours = _comparable(describe(driver.mount("c"), mtime_ns=False))
    finally:
        driver.unmount("c")
    theirs = _comparable(describe(exported, mtime_ns=False))
    assert "data/keep/k" not in ours and ours["usr/share/new"] and "bin/cat" not in ours
    assert ours["<hard links>"] == (("data/h1", "data/h2"),)
    assert ours == theirs
