"""userns-remap: a caisd whose containers' root is a subordinate uid on the host.

The fixture creates a system user and group `cais-se-remapPID` with 65536-id ranges in /etc/subuid
and /etc/subgid, and removes them (and their lines) afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import signal
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
from tests.caisd import VENV_BIN, Caisd, caisd

USER = f"cais-se-remap{os.getpid()}"  # unique: other checkouts may run this file at once
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


@contextlib.contextmanager
def _sub_user(name: str) -> Iterator[tuple[int, int]]:
    """A system user and group `name` with 65536-id ranges: (first subordinate uid, gid)."""
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        start = userns._free_start(SUB_FILES) + 65536  # some room for a concurrent `default`
        for path in SUB_FILES:
            with open(path, "a") as f:
                f.write(f"{name}:{start}:65536\n")
        yield start, start
    finally:
        _drop_lines(name)
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def remap_user() -> Iterator[tuple[int, int]]:
    """(first subordinate uid, first subordinate gid) of the test user."""
    with _sub_user(USER) as ids:
        yield ids


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


def test_docker_info_says_userns(remapped: Caisd) -> None:
    assert "name=userns" in remapped.docker("info", "--format", "{{json .SecurityOptions}}").stdout.decode()


def test_image_files_are_roots_inside_and_writable(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    out = remapped.docker("run", "--rm", "busybox", "sh", "-c",
                          "ls -ln /bin/busybox; stat -c %u:%g /; echo hi > /etc/cais-x && cat /etc/cais-x").stdout
    lines = out.decode().splitlines()
    assert lines[0].split()[2:4] == ["0", "0"]
    assert lines[1:] == ["0:0", "hi"]
    storage = os.path.join(remapped.data_root, "storage")
    assert os.stat(storage).st_mode & 0o777 == 0o711
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


def test_docker_cp_a_gives_the_containers_user_shifted(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    """`cp -a` into a `--user nobody` container: nobody's ids inside, shifted on the host (dockerd
    would chown to the unshifted ids, which the container sees as the overflow id)."""
    uid, gid = remap_user
    cid = remapped.docker("create", "--user", "nobody", "busybox", "stat", "-c", "%u:%g", "/tmp/cais-cpa/f").stdout \
        .decode().strip()
    src = tempfile.mkdtemp(prefix="cais-se-remapcpa-", dir="/tmp")
    try:
        os.mkdir(os.path.join(src, "cais-cpa"))
        with open(os.path.join(src, "cais-cpa", "f"), "w") as f:
            f.write("x")
        os.chown(os.path.join(src, "cais-cpa", "f"), 5, 6)
        remapped.docker("cp", "-a", os.path.join(src, "cais-cpa"), f"{cid}:/tmp/")
        upper = _upper(remapped, cid)
        st = os.lstat(os.path.join(upper, "tmp", "cais-cpa", "f"))
        assert (st.st_uid, st.st_gid) == (uid + 65534, gid + 65534)
        assert remapped.docker("start", "-a", cid).stdout.split() == [b"65534:65534"]
    finally:
        remapped.docker("rm", "-f", cid, check=False)
        subprocess.run(["rm", "-rf", src])


REMAPPED_BUILD = """FROM busybox AS base
RUN echo base > /base
FROM busybox
RUN cat /proc/self/uid_map > /uidmap && touch /made && chown 7:8 /made && mkdir /d && echo x >> /etc/passwd
RUN --mount=type=cache,target=/cache --mount=type=bind,target=/ctx --mount=from=base,target=/b \\
    touch /cache/x && cat /ctx/Dockerfile /b/base > /mounts && stat -c %u:%g /b/base >> /mounts
RUN <<EOF
#!/bin/sh
echo script > /script
EOF
USER nobody
RUN touch /tmp/by-nobody && id -u > /tmp/by-nobody
"""


def test_build_runs_remapped(remapped: Caisd, remap_user: tuple[int, int], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RUN under userns-remap runs in the daemon's mapping, as a container does (and as dockerd's
    builder does); the layer it makes has the container's ids, not the host's."""
    uid, _ = remap_user
    (tmp_path / "Dockerfile").write_text(REMAPPED_BUILD)
    tag = f"cais-se-remapbuild:{os.getpid()}"
    p = subprocess.run(["docker", "-H", remapped.host, "build", "-q", "-t", tag, str(tmp_path)], capture_output=True,
                       timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert p.returncode == 0, p.stderr.decode()
    try:
        cid = remapped.docker("create", tag).stdout.decode().strip()
        try:
            with tarfile.open(fileobj=io.BytesIO(remapped.docker("export", cid).stdout)) as tar:
                owners = {n: (tar.getmember(n).uid, tar.getmember(n).gid) for n in
                          ("made", "d", "etc/passwd", "tmp/by-nobody", "bin/busybox", "mounts", "script")}
                uidmap = tar.extractfile("uidmap").read().split()  # type: ignore[union-attr]
        finally:
            remapped.docker("rm", "-f", cid, check=False)
        assert uidmap == [b"0", str(uid).encode(), b"65536"]
        mounts = remapped.docker("run", "--rm", tag, "cat", "/mounts", "/script").stdout.decode()
        assert mounts == REMAPPED_BUILD + "base\n0:0\nscript\n"  # RUN --mount sources reach the remapped root
        assert owners == {"made": (7, 8), "d": (0, 0), "etc/passwd": (0, 0), "tmp/by-nobody": (65534, 65534),
                          "bin/busybox": (0, 0), "mounts": (0, 0), "script": (0, 0)}
        out = remapped.docker("run", "--rm", tag, "stat", "-c", "%u:%g", "/made", "/tmp/by-nobody").stdout.split()
        assert out == [b"7:8", b"65534:65534"]
    finally:
        remapped.docker("rmi", tag, check=False)


def test_vfs_driver(remap_user: tuple[int, int]) -> None:
    with caisd(extra=["--userns-remap", f"{USER}:{USER}", "-s", "vfs"]) as d:
        os.chmod(d.root, 0o711)
        out = d.docker("run", "--rm", "busybox", "sh", "-c", "id -u; stat -c %u:%g /bin/busybox /; touch /x").stdout
        assert out.split() == [b"0", b"0:0", b"0:0"]


def test_volumes_are_idmapped_binds_as_dockerd_unless_idmap(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    """A volume keeps the container's owners on disk (idmapped), filled from the image too, so it
    serves remapped and --userns=host containers alike; a bind shows the host's owners through the
    mapping as dockerd's do (root is nobody), or, marked `idmap`, as they are."""
    name = f"cais-se-remap-{os.getpid()}"
    src = tempfile.mkdtemp(prefix="cais-se-remapbind-", dir="/tmp")
    try:
        os.chmod(src, 0o755)
        with open(os.path.join(src, "f"), "w"):
            pass
        out = remapped.docker("run", "--rm", "-v", f"{name}:/etc", "--userns=host", "busybox", "sh", "-c",
                              "echo ok > /etc/host-made && mkdir /etc/sub && stat -c %u /etc/passwd").stdout
        assert out.split() == [b"0"]
        script = ("echo ok > /etc/f && chown 5:6 /etc/f && stat -c '%n %u:%g' /etc/host-made /etc/f /etc/passwd "
                  "/sub /b/f /i/f; touch /b/x 2>/dev/null || echo denied; touch /i/x; ls -d /etc/sub")
        out = remapped.docker("run", "--rm", "-v", f"{name}:/etc", "-v", f"{src}:/b", "-v", f"{src}:/i:idmap",
                              "--mount", f"type=volume,src={name},dst=/sub,volume-subpath=sub", "busybox",
                              "sh", "-c", script, check=False)
        path = remapped.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.decode().strip()
        assert out.stdout.decode().splitlines() == ["/etc/host-made 0:0", "/etc/f 5:6", "/etc/passwd 0:0", "/sub 0:0",
                                                    "/b/f 65534:65534", "/i/f 0:0", "denied", "/etc/sub"], out.stderr
        st = os.stat(os.path.join(path, "f"))
        assert (st.st_uid, st.st_gid) == (5, 6)
        assert os.stat(os.path.join(src, "x")).st_uid == 0
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o701  # the volumes dir: root's only
        assert os.stat(os.path.dirname(os.path.dirname(path))).st_mode & 0o777 == 0o700
    finally:
        remapped.docker("volume", "rm", "-f", name, check=False)
        subprocess.run(["rm", "-rf", src])


def test_docker_cp_sees_a_volume_idmapped(remapped: Caisd) -> None:
    """cp into and out of a remapped container's volume, stopped or running: through the same
    idmapping as the container, so a file has the tar's owners on disk, in the tar out and inside."""
    name = f"cais-se-remapcpv-{os.getpid()}"
    src = tempfile.mkdtemp(prefix="cais-se-remapcpv-", dir="/tmp")
    cid = remapped.docker("create", "-v", f"{name}:/v", "busybox", "stat", "-c", "%u:%g", "/v/f").stdout.decode().strip()
    try:
        with open(os.path.join(src, "f"), "w") as f:
            f.write("x")
        os.chown(os.path.join(src, "f"), 5, 6)
        remapped.docker("cp", os.path.join(src, "f"), f"{cid}:/v/f")
        path = remapped.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.decode().strip()
        st = os.stat(os.path.join(path, "f"))
        assert (st.st_uid, st.st_gid) == (5, 6)
        with tarfile.open(fileobj=io.BytesIO(remapped.docker("cp", f"{cid}:/v/f", "-").stdout)) as tar:
            assert (tar.getmember("f").uid, tar.getmember("f").gid) == (5, 6)
        assert remapped.docker("start", "-a", cid).stdout.split() == [b"5:6"]
        running = remapped.docker("run", "-d", "-v", f"{name}:/v", "busybox", "sleep", "60").stdout.decode().strip()
        try:  # and into a running one's (its idmapped mount, through /proc/PID/root)
            os.chown(os.path.join(src, "f"), 7, 8)
            remapped.docker("cp", os.path.join(src, "f"), f"{running}:/v/g")
            assert remapped.docker("exec", running, "stat", "-c", "%u:%g", "/v/g").stdout.split() == [b"7:8"]
            assert os.stat(os.path.join(path, "g")).st_uid == 7
        finally:
            remapped.docker("rm", "-f", running, check=False)
    finally:
        remapped.docker("rm", "-f", cid, check=False)
        remapped.docker("volume", "rm", "-f", name, check=False)
        subprocess.run(["rm", "-rf", src])


def test_tmpfs_volume_is_idmapped(remapped: Caisd) -> None:
    name = f"cais-se-remaptmpfs-{os.getpid()}"
    try:
        remapped.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m", name)
        out = remapped.docker("run", "--rm", "-v", f"{name}:/t", "busybox", "sh", "-c",
                              "touch /t/f && chown 3:4 /t/f && stat -c %u:%g /t /t/f").stdout
        assert out.split() == [b"0:0", b"3:4"]
    finally:
        remapped.docker("volume", "rm", "-f", name, check=False)


def test_idmap_where_the_file_system_cannot_is_a_clear_error(remapped: Caisd) -> None:
    err = remapped.docker("run", "--rm", "-v", "/sys/kernel:/k:idmap", "busybox", "true", check=False).stderr.decode()
    assert "userns-remap: cannot idmap the bind mount /sys/kernel" in err and "does not support idmapped" in err
    assert remapped.docker("run", "--rm", "-v", "/sys/kernel:/k:ro", "busybox", "true").returncode == 0
    err = remapped.docker("run", "--rm", "-v", "cais-se-remapv:/k:idmap", "busybox", "true", check=False).stderr
    assert b"BindOptions must not be specified" in err


def test_a_rootfs_that_cannot_mount_fails_the_start_cleanly(remapped: Caisd) -> None:
    cid = remapped.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        os.rmdir(os.path.join(os.path.dirname(_upper(remapped, cid)), "work"))
        err = remapped.docker("start", "-a", cid, check=False, timeout=30).stderr.decode()
        assert "cannot mount an overlay" in err
        state = remapped.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Error}}", cid).stdout.decode()
        assert int(state.split()[0]) > 0 and "cannot mount" in state
    finally:
        remapped.docker("rm", "-f", cid, check=False)


def test_userns_host_opts_out(remapped: Caisd) -> None:
    cid = remapped.docker("run", "-d", "--userns=host", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        pid = int(remapped.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
        assert _status_ids(pid) == (0, 0)
    finally:
        remapped.docker("rm", "-f", cid, check=False)


def test_namespace_modes_under_remap(remapped: Caisd, remap_user: tuple[int, int]) -> None:
    """As dockerd: the host's PID or IPC namespace only with --userns=host; a container's PID
    namespace is joined with its user namespace."""
    for flag in ("--pid", "--ipc"):
        err = remapped.docker("create", flag, "host", "busybox", "true", check=False).stderr.decode()
        assert f"cannot share the host {flag[2:].upper()} namespace when user namespaces are enabled" in err
    cid = remapped.docker("create", "--pid", "host", "--userns=host", "busybox", "true").stdout.decode().strip()
    remapped.docker("rm", cid)
    donor = remapped.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        run = remapped.docker("run", "-d", "--pid", f"container:{donor}", "busybox", "sleep", "61", check=False)
        assert run.returncode == 0, run.stderr.decode()
        joiner = run.stdout.decode().strip()
        pids = [int(remapped.docker("inspect", "-f", "{{.State.Pid}}", c).stdout) for c in (donor, joiner)]
        for kind in ("pid", "user"):
            assert os.readlink(f"/proc/{pids[0]}/ns/{kind}") == os.readlink(f"/proc/{pids[1]}/ns/{kind}")
        assert _status_ids(pids[1]) == remap_user
        ps = remapped.docker("exec", joiner, "ps", "-o", "args").stdout.decode()
        assert "sleep 60" in ps and "sleep 61" in ps
    finally:
        remapped.docker("rm", "-f", donor, *(c for c in [locals().get("joiner")] if c), check=False)


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
    driver = open_driver(os.path.join(root, "storage"), name, remapped=True)
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


def _upper(d: Caisd, cid: str) -> str:
    return os.path.join(d.data_root, "storage", "overlay", "containers", cid, "diff")


WRITES = "touch /cais-new; chown 7:8 /cais-new; echo x >> /etc/passwd"
LOOK = "echo $(id -u):$(id -g); cat /proc/self/uid_map; stat -c '%n %u:%g' / /bin/busybox /etc/group"


def test_layers_keep_the_images_owners_the_upper_dir_has_host_ids(remapped: Caisd,
                                                                  remap_user: tuple[int, int]) -> None:
    """The one copy of the layers is seen through an idmapped mount; what the container writes
    lands in its upper dir with host ids, as with dockerd."""
    uid, gid = remap_user
    cid = remapped.docker("create", "busybox", "sh", "-c", f"{LOOK}; {WRITES}").stdout.decode().strip()
    try:
        out = remapped.docker("start", "-a", cid).stdout.decode().split("\n")
        assert out[:5] == ["0:0", f"{0:>10}{uid:>11}{65536:>11}",
                           "/ 0:0", "/bin/busybox 0:0", "/etc/group 0:0"]
        upper = _upper(remapped, cid)
        owners = {n: (os.lstat(os.path.join(upper, n)).st_uid, os.lstat(os.path.join(upper, n)).st_gid)
                  for n in ("", "cais-new", "etc/passwd")}
        assert owners == {"": (uid, gid), "cais-new": (uid + 7, gid + 8), "etc/passwd": (uid, gid)}
        layers = os.path.join(remapped.data_root, "storage", "overlay", "layers")
        busyboxes = [os.path.join(layers, n, "diff", "bin", "busybox") for n in os.listdir(layers)]
        assert [os.stat(p).st_uid for p in busyboxes if os.path.exists(p)] == [0]  # never chowned
        assert not os.path.exists(os.path.join(remapped.data_root, f"{uid}.{gid}"))  # no per-mapping copy
    finally:
        remapped.docker("rm", "-f", cid, check=False)


def test_userns_host_sees_the_real_owners(remapped: Caisd) -> None:
    cid = remapped.docker("create", "--userns=host", "busybox", "sh", "-c", f"{LOOK}; {WRITES}").stdout
    cid_s = cid.decode().strip()
    try:
        out = remapped.docker("start", "-a", cid_s).stdout.decode().split("\n")
        assert out[1].split() == ["0", "0", "4294967295"]
        assert out[2:5] == ["/ 0:0", "/bin/busybox 0:0", "/etc/group 0:0"]
        st = os.lstat(os.path.join(_upper(remapped, cid_s), "cais-new"))
        assert (st.st_uid, st.st_gid) == (7, 8)
    finally:
        remapped.docker("rm", "-f", cid_s, check=False)


def test_images_and_containers_from_before_remap(remap_user: tuple[int, int]) -> None:
    """An image loaded without remap runs remapped afterwards, with the daemonless CLI (daemon.json)
    and with caisd; a container made before refuses to start remapped, in one line."""
    if os.path.exists("/run/cais/cais.sock"):
        pytest.skip("a system caisd runs: the CLI would talk to it")
    uid, _ = remap_user
    with caisd() as d:
        os.chmod(d.root, 0o711)
        before = d.docker("create", "busybox", "true").stdout.decode().strip()
        host = d.docker("create", "--userns=host", "busybox", "stat", "-c", "%u", "/bin/busybox").stdout.decode()
        d.kill(signal.SIGTERM)
        d.proc.wait(30)
        config = os.path.join(d.root, "remap.json")
        with open(config, "w") as f:
            json.dump({"userns-remap": USER}, f)
        env = {k: v for k, v in os.environ.items() if k not in ("CAIS_HOST", "DOCKER_HOST")}
        env.update(CAIS_DATA_ROOT=d.data_root, CAIS_EXEC_ROOT=d.exec_root, CAIS_CGROUP_PARENT=d.cgroup_parent,
                   CAIS_CONFIG_FILE=config)
        cli = subprocess.run([os.path.join(VENV_BIN, "cais"), "run", "--rm", "busybox", "sh", "-c", LOOK],
                             env=env, capture_output=True, timeout=120)
        assert cli.stdout.decode().split("\n")[1:3] == [f"{0:>10}{uid:>11}{65536:>11}", "/ 0:0"], cli.stderr
        d.extra += ["--userns-remap", f"{USER}:{USER}"]
        d.start()
        assert d.docker("run", "--rm", "busybox", "stat", "-c", "%u:%g", "/bin/busybox").stdout == b"0:0\n"
        err = d.docker("start", before, check=False).stderr.decode()
        assert "was made before userns-remap was turned on" in err and "Traceback" not in err
        assert d.docker("start", "-a", host.strip()).stdout == b"0\n"


def test_bad_daemon_json_for_the_cli_fails_in_one_line() -> None:
    root = tempfile.mkdtemp(prefix="cais-se-remapcli-", dir="/tmp")
    try:
        config = os.path.join(root, "daemon.json")
        env = {k: v for k, v in os.environ.items() if k not in ("CAIS_HOST", "DOCKER_HOST")}
        env.update(CAIS_DATA_ROOT=os.path.join(root, "data"), CAIS_EXEC_ROOT=os.path.join(root, "exec"),
                   CAIS_CONFIG_FILE=config)
        for content, message in (('{"userns-remap": "cais-se-nosuchuser"}', "userns-remap: no such user"),
                                 ("{not json", "cannot read")):
            with open(config, "w") as f:
                f.write(content)
            proc = subprocess.run([os.path.join(VENV_BIN, "cais"), "ps"], env=env, capture_output=True, text=True,
                                  timeout=60)
            assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["rm", "-rf", root])


CLASSIC_BUILD = """FROM busybox
RUN cat /proc/self/uid_map > /uidmap && touch /made && chown 7:8 /made && mkdir /d && echo x >> /etc/passwd
USER nobody
RUN touch /tmp/by-nobody && id > /tmp/id
"""


def _built(d: Caisd, context: str) -> dict[str, tuple[int, int, bytes]]:
    """Build CLASSIC_BUILD; the owners (and contents) of what its RUNs made, from `docker save`'s layers."""
    tag = f"cais-se-remapbuild:{os.getpid()}"
    p = subprocess.run(["docker", "-H", d.host, "build", "-q", "-t", tag, context], capture_output=True, timeout=300,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert p.returncode == 0, p.stderr.decode()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(d.docker("save", tag).stdout)) as outer:
        for m in outer:
            if not m.isreg() or m.size <= 1024:
                continue
            try:
                inner = tarfile.open(fileobj=outer.extractfile(m))  # noqa: SIM115 - closed below
            except tarfile.TarError:
                continue  # a config or manifest
            with inner:
                for x in inner:
                    if x.name in ("made", "d", "etc/passwd", "tmp/by-nobody", "uidmap", "tmp/id"):
                        data = inner.extractfile(x).read() if x.name in ("uidmap", "tmp/id") else b""  # type: ignore[union-attr]
                        out[x.name] = (x.uid, x.gid, data)
    d.docker("rmi", tag)
    return out


def test_same_view_as_dockerd_userns_remap(remapped: Caisd, remap_user: tuple[int, int], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """dockerd 20.10 --userns-remap on the same user: the same ids, uid_map and owners inside, the
    same host ids in the upper dir; under --userns=host dockerd shows its chowned copy's owners,
    cais the image's. A build's RUN runs remapped in both, and its layer holds the same owners."""
    from tests.peers import dockerd
    uid, gid = remap_user
    image = remapped.docker("save", "busybox").stdout
    with dockerd(extra=["--userns-remap", f"{USER}:{USER}"]) as docker:
        docker.docker("load", input=image)
        views = {}
        for name, d in (("cais", remapped), ("docker", docker)):
            cid = d.docker("create", "busybox", "sh", "-c", f"{LOOK}; {WRITES}").stdout.decode().strip()
            try:
                inside = d.docker("start", "-a", cid).stdout.decode()
                upper = (d.docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", cid).stdout.decode().strip()
                         if name == "docker" else _upper(remapped, cid))
                on_disk = [(os.lstat(os.path.join(upper, n)).st_uid, os.lstat(os.path.join(upper, n)).st_gid)
                           for n in ("cais-new", "etc/passwd")]
                host = d.docker("run", "--rm", "--userns=host", "busybox", "stat", "-c", "%u:%g", "/bin/busybox").stdout
                views[name] = (inside, on_disk, host.decode().strip())
            finally:
                d.docker("rm", "-f", cid, check=False)
        (tmp_path / "Dockerfile").write_text(CLASSIC_BUILD)
        built = {name: _built(d, str(tmp_path)) for name, d in (("cais", remapped), ("docker", docker))}
    assert built["cais"] == built["docker"]
    assert built["cais"]["made"][:2] == (7, 8) and built["cais"]["uidmap"][2].split()[1] == str(uid).encode()
    assert views["cais"][:2] == views["docker"][:2]
    assert views["cais"][1] == [(uid + 7, gid + 8), (uid, gid)]
    assert (views["cais"][2], views["docker"][2]) == ("0:0", f"{uid}:{gid}")


def test_containers_keep_their_mapping_when_it_changes(remap_user: tuple[int, int]) -> None:
    """caisd restarted with another user's mapping: an earlier container still runs (and reaches its
    rootfs) in the mapping it was made with; new ones get the new one."""
    with caisd(extra=["--userns-remap", USER]) as d, _sub_user(USER + "2") as (other, _):
        os.chmod(d.root, 0o711)
        old = d.docker("create", "busybox", "sh", "-c", "cat /proc/self/uid_map; ls /bin/busybox").stdout
        d.kill(signal.SIGTERM)
        d.proc.wait(30)
        d.extra = ["--userns-remap", USER + "2"]
        d.start()
        assert d.docker("start", "-a", old.decode().strip()).stdout.split() == [
            b"0", str(remap_user[0]).encode(), b"65536", b"/bin/busybox"]
        assert d.docker("run", "--rm", "busybox", "cat", "/proc/self/uid_map").stdout.split()[1] == str(other).encode()
