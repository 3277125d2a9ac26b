"""userns-remap: a caisd whose containers' root is a subordinate uid on the host.

The fixture creates a system user and group `cais-se-remap` with 65536-id ranges in /etc/subuid
and /etc/subgid, and removes them (and their lines) afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator

import pytest

from cais.engine import userns
from cais.storage import open_driver
from cais.storage.errors import InvalidLayer
from cais.storage.idshift import IdShift, shift_tree
from tests.caisd import Caisd, caisd

USER = "cais-se-remap"
SUB_FILES = ("/etc/subuid", "/etc/subgid")


def _drop_lines(name: str) -> None:
    for path in SUB_FILES:
        with contextlib.suppress(FileNotFoundError):
            with open(path) as f:
                lines = f.readlines()
            kept = [line for line in lines if not line.startswith(f"{name}:")]
            if kept != lines:
                with open(path, "w") as f:
                    f.writelines(kept)


@pytest.fixture(scope="module")
def remap_user() -> Iterator[tuple[int, int]]:
    """(first subordinate uid, first subordinate gid) of the test user."""
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                   check=True, capture_output=True)
    try:
        start = userns._free_start(SUB_FILES) + 65536  # some room for a concurrent `default`
        for path in SUB_FILES:
            with open(path, "a") as f:
                f.write(f"{USER}:{start}:65536\n")
        yield start, start
    finally:
        _drop_lines(USER)
        subprocess.run(["userdel", USER], capture_output=True)


@pytest.fixture(scope="module")
def remapped(remap_user: tuple[int, int]) -> Iterator[Caisd]:
    with caisd(extra=["--userns-remap", f"{USER}:{USER}"]) as d:
        os.chmod(d.root, 0o711)  # mkdtemp's 0700 would stop the remapped root on its way to the rootfs
        yield d


def _status_ids(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_root_inside_is_the_subordinate_uid_outside(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    assert remapped.docker("run", "--rm", "busybox", "id").stdout.decode().startswith("uid=0(root) gid=0(root)")
    cid = remapped.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        pid = int(remapped.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
        assert _status_ids(pid) == remap_user
        maps = remapped.docker("exec", cid, "cat", "/proc/self/uid_map").stdout.split()
        assert maps == [b"0", str(remap_user[0]).encode(), b"65536"]
    finally:
        remapped.docker("rm", "-f", cid, check=False)


def test_image_files_are_roots_inside_and_writable(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    out = remapped.docker("run", "--rm", "busybox", "sh", "-c",
                          "ls -ln /bin/busybox; stat -c %u:%g /; echo hi > /etc/cais-x && cat /etc/cais-x").stdout
    lines = out.decode().splitlines()
    assert lines[0].split()[2:4] == ["0", "0"]
    assert lines[1:] == ["0:0", "hi"]
    storage = os.path.join(remapped.data_root, "storage")
    assert (os.stat(storage).st_mode & 0o777, os.stat(storage).st_gid) == (0o710, remap_user[1])
    assert os.stat(os.path.join(storage, "overlay", "layers")).st_mode & 0o777 == 0o700


def test_commit_records_the_containers_owners(remapped: Caisd) -> None:
    cid = remapped.docker("run", "-d", "busybox", "sh", "-c", "echo c > /etc/cais-c; chown 7:8 /etc/cais-c").stdout
    cid_s = cid.decode().strip()
    image = "cais-se-remap-commit:latest"
    try:
        remapped.docker("wait", cid_s)
        remapped.docker("commit", cid_s, image)
        out = remapped.docker("run", "--rm", image, "stat", "-c", "%u:%g", "/etc/cais-c", "/etc/passwd").stdout
        assert out.split() == [b"7:8", b"0:0"]
    finally:
        remapped.docker("rm", "-f", cid_s, check=False)
        remapped.docker("rmi", "-f", image, check=False)


def test_docker_cp_and_export_show_the_containers_owners(remapped: Caisd) -> None:
    cid = remapped.docker("create", "busybox", "stat", "-c", "%u:%g", "/etc/cais-cp").stdout.decode().strip()
    src = tempfile.mkdtemp(prefix="cais-se-remapcp-", dir="/tmp")
    try:
        with open(os.path.join(src, "f"), "w") as f:
            f.write("x")
        os.chown(os.path.join(src, "f"), 5, 6)
        remapped.docker("cp", os.path.join(src, "f"), f"{cid}:/etc/cais-cp")
        listing = remapped.docker("export", cid).stdout
        with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
            assert (tar.getmember("etc/cais-cp").uid, tar.getmember("etc/cais-cp").gid) == (5, 6)
            assert tar.getmember("bin/busybox").uid == 0
        back = remapped.docker("cp", f"{cid}:/etc/cais-cp", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(back)) as tar:
            assert (tar.getmember("cais-cp").uid, tar.getmember("cais-cp").gid) == (5, 6)
        assert remapped.docker("start", "-a", cid).stdout.split() == [b"5:6"]
    finally:
        remapped.docker("rm", "-f", cid, check=False)
        subprocess.run(["rm", "-rf", src])


def test_vfs_driver(remap_user: tuple[int, int]) -> None:
    with caisd(extra=["--userns-remap", f"{USER}:{USER}", "-s", "vfs"]) as d:
        os.chmod(d.root, 0o711)
        out = d.docker("run", "--rm", "busybox", "sh", "-c", "id -u; stat -c %u:%g /bin/busybox /; touch /x").stdout
        assert out.split() == [b"0", b"0:0", b"0:0"]


def test_named_volume_is_writable_by_remapped_root(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    name = f"cais-se-remap-{os.getpid()}"
    try:
        out = remapped.docker("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c",
                              "echo ok > /data/f && stat -c %u /data/f").stdout
        assert out.split() == [b"0"]
        path = remapped.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.decode().strip()
        assert os.stat(os.path.join(path, "f")).st_uid == remap_user[0]
    finally:
        remapped.docker("volume", "rm", "-f", name, check=False)


def test_userns_host_opts_out(remapped: Caisd) -> None:
    cid = remapped.docker("run", "-d", "--userns=host", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        pid = int(remapped.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
        assert _status_ids(pid) == (0, 0)
    finally:
        remapped.docker("rm", "-f", cid, check=False)


def _caisd_error(*flags: str, config: dict | None = None) -> str:
    root = tempfile.mkdtemp(prefix="cais-se-remapbad-", dir="/tmp")
    try:
        cfg = os.path.join(root, "daemon.json")
        with open(cfg, "w") as f:
            json.dump(config or {}, f)
        d = Caisd(root=root, sock=os.path.join(root, "d.sock"), cgroup_parent="/cais-se-remapbad", log="")
        args = [*d.args(), *flags]
        args[args.index("--config-file") + 1] = cfg
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        return proc.stderr.strip()
    finally:
        subprocess.run(["rm", "-rf", root])


def test_bad_settings_fail_in_one_line() -> None:
    assert _caisd_error("--userns-remap", "cais-se-nosuchuser") == "caisd: userns-remap: no such user: cais-se-nosuchuser"
    err = _caisd_error(config={"userns-remap": "root:cais-se-nosuchgroup"})
    assert err == "caisd: userns-remap: no such group: cais-se-nosuchgroup"
    err = _caisd_error("--userns-remap", "nobody")
    assert err == "caisd: userns-remap: no subordinate uid range for user nobody in /etc/subuid"
    assert "expected 'default' or USER[:GROUP]" in _caisd_error("--userns-remap", "a:b:c")


def test_default_creates_cais_remap_with_ranges() -> None:
    """`default` on a host without cais-remap: the user and 65536-id ranges are made (temporary
    subuid/subgid files here; the user is removed afterwards if this test made it)."""
    existed = _exists(userns.DEFAULT_USER)
    root = tempfile.mkdtemp(prefix="cais-se-remapdef-", dir="/tmp")
    try:
        sub = [os.path.join(root, n) for n in ("subuid", "subgid")]
        with open(sub[0], "w") as f:
            f.write("someone:100000:65536\n")
        mapping = userns.resolve("default", *sub)
        assert (mapping.uid, mapping.uid_size, mapping.gid, mapping.gid_size) == (165536, 65536, 165536, 65536)
        assert _exists(userns.DEFAULT_USER)
        assert userns.resolve("default", *sub) == mapping  # idempotent
    finally:
        if not existed:
            for _ in range(5):
                if subprocess.run(["userdel", userns.DEFAULT_USER], capture_output=True).returncode in (0, 6):
                    break
                time.sleep(0.2)
        subprocess.run(["rm", "-rf", root])


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_shift_tree_keeps_links_setuid_and_file_capabilities() -> None:
    root = tempfile.mkdtemp(prefix="cais-se-remapshift-", dir="/var/tmp")
    try:
        tree = os.path.join(root, "t")
        os.mkdir(tree)
        f, link, suid = (os.path.join(tree, n) for n in ("f", "link", "suid"))
        with open(f, "w"):
            pass
        os.chown(f, 3, 4)
        os.link(f, link)
        with open(suid, "w"):
            pass
        os.chmod(suid, 0o4755)
        v2 = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # effective, permitted CAP_NET_RAW
        os.setxattr(suid, "security.capability", v2)
        shift = IdShift(200000, 65536, 300000, 65536)
        shift_tree(tree, shift)
        assert (os.stat(f).st_uid, os.stat(f).st_gid) == (200003, 300004)  # shifted once despite the link
        assert os.stat(tree).st_uid == 200000
        assert os.stat(suid).st_mode & 0o7777 == 0o4755
        assert os.getxattr(suid, "security.capability") == struct.pack("<IIIIII", 0x03000001, 1 << 13, 0, 0, 0,
                                                                       200000)
        shift_tree(tree, shift, back=True)
        assert os.stat(f).st_uid == 3 and os.getxattr(suid, "security.capability") == v2
        os.chown(f, 70000, 0)
        with pytest.raises(InvalidLayer, match="outside the remapped range"):
            shift_tree(tree, shift)
    finally:
        subprocess.run(["rm", "-rf", root])


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_exported_diff_has_the_containers_owners_and_v2_capabilities(name: str) -> None:
    root = tempfile.mkdtemp(prefix="cais-se-remapdiff-", dir="/var/tmp")
    shift = IdShift(200000, 65536, 300000, 65536)
    driver = open_driver(os.path.join(root, "storage"), name, shift.gid)
    layer, cid = "a" * 64, "b" * 64
    try:
        driver.create_layer(layer, None)
        driver.create_rw(cid, layer, shift)
        path = os.path.join(driver.mount(cid), "f")
        with open(path, "w"):
            pass
        os.chown(path, 200007, 300008)
        os.setxattr(path, "security.capability", struct.pack("<IIIIII", 0x03000001, 1 << 13, 0, 0, 0, 200000))
        out = io.BytesIO()
        driver.export_diff(cid, out)
        out.seek(0)
        with tarfile.open(fileobj=out) as tar:
            f = tar.getmember("f")
        assert (f.uid, f.gid) == (7, 8)
        caps = f.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
        assert caps == struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    finally:
        with contextlib.suppress(Exception):
            driver.unmount(cid)
        subprocess.run(["rm", "-rf", root])
