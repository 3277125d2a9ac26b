"""Round trips with real tools: dockerd (load/save/run), skopeo and umoci OCI layouts.

The rootfs cais unpacks is compared with docker's own export of the same image: file list,
types, modes (setuid included), owners, link targets and file contents.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from cais.image.archive import load, load_layout, save
from cais.image.bootstrap import bootstrap_busybox
from tests.image.conftest import make_store
from tests.peers import _unmount_under, dockerd

pytestmark = pytest.mark.peers

# Made by docker for the container, not part of the image.
DOCKER_RUNTIME_FILES = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab",
                        "dev/console", "dev/pts", "dev/shm", "proc", "sys", "dev"}

DOCKERFILE = """FROM busybox:latest
RUN mkdir -p /data/sub && echo payload > /data/file && chmod 4755 /data/file \\
 && ln -s ../data/file /data/link && ln /data/file /data/hard && chown -R 1000:2000 /data/sub \\
 && rm /etc/group && mkdir /opq && echo a > /opq/a
RUN rm -rf /opq && mkdir /opq && echo b > /opq/b && mknod /data/null c 1 3 && chmod 0640 /data/null \\
 && rm /bin/vi
LABEL org.example=cais
CMD ["cat", "/data/file"]
"""


@pytest.fixture(scope="module")
def docker_peer():
    with dockerd() as d:
        yield d


def tree_from_tar(data: bytes) -> dict[str, tuple]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            name = m.name.removeprefix("./").rstrip("/")
            if not name or name in DOCKER_RUNTIME_FILES:
                continue
            if m.isreg() or m.islnk():
                kind, extra = "f", (hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isreg() else None)
            elif m.isdir():
                kind, extra = "d", None
            elif m.issym():
                kind, extra = "l", m.linkname
            elif m.ischr() or m.isblk():
                kind, extra = "c" if m.ischr() else "b", (m.devmajor, m.devminor)
            else:
                kind, extra = "p", None
            out[name] = (kind, m.mode & 0o7777 if kind != "l" else 0, m.uid, m.gid, extra)
    return out


def tree_from_dir(root: str, hardlinked: set[str]) -> dict[str, tuple]:
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, root)
            if rel in DOCKER_RUNTIME_FILES:
                continue
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                kind, extra = "f", None if rel in hardlinked else digest
            elif stat.S_ISDIR(st.st_mode):
                kind, extra = "d", None
            elif stat.S_ISLNK(st.st_mode):
                kind, extra = "l", os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                kind, extra = "p", None
            out[rel] = (kind, stat.S_IMODE(st.st_mode) if kind != "l" else 0, st.st_uid, st.st_gid, extra)
    return out


def cais_tree(store, name: str, hardlinked: set[str]) -> dict[str, tuple]:
    rw = "cais-img-peer-" + os.urandom(4).hex()
    store.driver.create_rw(rw, store.layers_of(name)[-1]["ChainID"][7:])
    try:
        root = store.driver.mount(rw)
        try:
            return tree_from_dir(root, hardlinked)
        finally:
            store.driver.unmount(rw)
    finally:
        store.driver.remove_rw(rw)


def run_with_runc(store, name: str, args: list[str], tmp: str) -> bytes:
    """Run `args` in a container made of the image's layers (a driver rw layer), with runc."""
    import json

    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    rw = "cais-img-run-" + os.urandom(4).hex()
    bundle, state = os.path.join(tmp, rw), os.path.join(tmp, rw + "-state")
    os.makedirs(bundle)
    store.driver.create_rw(rw, store.top_layer_id(name))
    try:
        rootfs = store.driver.mount(rw)
        try:
            subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
            path = os.path.join(bundle, "config.json")
            with open(path) as f:
                spec = json.load(f)
            spec["root"] = {"path": rootfs, "readonly": False}
            spec["process"].update(terminal=False, args=args)
            with open(path, "w") as f:
                json.dump(spec, f)
            proc = subprocess.run(["runc", "--root", state, "run", "--bundle", bundle, rw],
                                  capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr.decode()
            return proc.stdout
        finally:
            subprocess.run(["runc", "--root", state, "delete", "--force", rw], capture_output=True)
            store.driver.unmount(rw)
    finally:
        store.driver.remove_rw(rw)


@pytest.fixture
def two_stores():
    top = tempfile.mkdtemp(prefix="cais-img-peer-")
    stores = [make_store(os.path.join(top, "a")), make_store(os.path.join(top, "b"))]
    try:
        yield stores
    finally:
        for s in stores:
            s.close()
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)


def test_cais_save_runs_in_docker_and_docker_save_loads_in_cais(docker_peer, two_stores, busybox_dir, tmp_root):
    cais, back = two_stores
    bootstrap_busybox(cais)
    out = io.BytesIO()
    save(cais, ["busybox:latest"], out)
    loaded = docker_peer.docker("load", input=out.getvalue()).stdout.decode()
    assert "Loaded image: busybox:latest" in loaded
    assert docker_peer.docker("run", "--rm", "--network=none", "busybox", "echo", "hi").stdout == b"hi\n"
    assert docker_peer.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.decode().strip() == \
        cais.inspect("busybox")["Id"]

    # docker builds on top of cais's image, with setuid, owners, links, a device, whiteouts, an opaque dir
    ctx = os.path.join(tmp_root, "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    docker_peer.docker("build", "--network=none", "-t", "built:1", ctx, timeout=300)
    saved = docker_peer.docker("save", "built:1").stdout
    assert load(back, io.BytesIO(saved)) == ["Loaded image: built:1"]
    info = back.inspect("built:1")
    assert info["Id"] == docker_peer.docker("image", "inspect", "-f", "{{.Id}}", "built:1").stdout.decode().strip()
    assert info["Config"]["Labels"] == {"org.example": "cais"}
    assert [h["CreatedBy"] for h in back.history("built:1")][-1].startswith("cais image bootstrap")

    # it runs: runc on the rootfs cais unpacked, with the image's own command
    assert run_with_runc(back, "built:1", back.inspect("built:1")["Config"]["Cmd"], tmp_root) == b"payload\n"

    cid = docker_peer.docker("create", "built:1").stdout.decode().strip()
    exported = docker_peer.docker("export", cid).stdout
    expected = tree_from_tar(exported)
    hardlinked = {k for k, v in expected.items() if v[0] == "f" and v[4] is None}
    got = cais_tree(back, "built:1", hardlinked)
    assert got == expected
    assert expected["data/file"][1] == 0o4755 and expected["data/sub"][2:4] == (1000, 2000)
    assert "etc/group" not in got and "bin/vi" not in got and sorted(k for k in got if k.startswith("opq")) == [
        "opq", "opq/b"]

    # and back: cais saves docker's image, docker loads and runs it
    back_out = io.BytesIO()
    save(back, ["built:1"], back_out)
    docker_peer.docker("rm", cid)
    docker_peer.docker("rmi", "built:1")
    docker_peer.docker("load", input=back_out.getvalue())
    assert docker_peer.docker("run", "--rm", "--network=none", "built:1").stdout == b"payload\n"


def test_skopeo_and_umoci_layouts_load(two_stores, busybox_dir, tmp_root):
    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("skopeo/umoci not installed")
    cais, other = two_stores
    bootstrap_busybox(cais)
    archive = os.path.join(tmp_root, "bb.tar")
    with open(archive, "wb") as f:
        save(cais, ["busybox:latest"], f)
    layout = os.path.join(tmp_root, "layout")
    # skopeo: docker-archive -> OCI layout, recompressed with gzip (so blob digests differ from diff_ids)
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-compress", f"docker-archive:{archive}",
                    f"oci:{layout}:base"], check=True, capture_output=True)
    # umoci: unpack, change, repack as a new tag (umoci writes its own gzip layers and whiteouts)
    bundle = os.path.join(tmp_root, "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:base", bundle], check=True, capture_output=True)
    with open(os.path.join(bundle, "rootfs", "umoci-was-here"), "w") as f:
        f.write("yes\n")
    os.unlink(os.path.join(bundle, "rootfs", "etc", "group"))
    subprocess.run(["umoci", "repack", "--image", f"{layout}:changed", bundle], check=True, capture_output=True)
    subprocess.run(["umoci", "config", "--image", f"{layout}:changed", "--tag", "docker.io/library/umoci:1",
                    "--config.cmd", "cat", "--config.cmd", "/umoci-was-here"], check=True, capture_output=True)
    messages = load_layout(other, layout)
    assert "Loaded image: umoci:1" in messages
    assert sum(m.startswith("Loaded image ID: ") for m in messages) == 2  # bare tags "base", "changed"
    tree = cais_tree(other, "umoci:1", set())
    assert tree["umoci-was-here"][0] == "f" and "etc/group" not in tree
    assert tree["bin/busybox"] == cais_tree(cais, "busybox:latest", set())["bin/busybox"]
    assert other.inspect("umoci:1")["Config"]["Cmd"] == ["cat", "/umoci-was-here"]
    assert run_with_runc(other, "umoci:1", ["cat", "/umoci-was-here"], tmp_root) == b"yes\n"


def test_xattrs_survive_a_docker_round_trip(docker_peer, two_stores):
    """security.capability (what docker's archives carry) and user.* xattrs, cais → docker → cais."""
    import struct

    from tests.image.builders import put_image

    cais, back = two_stores
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0).decode("latin-1")  # cap_net_bind_service+ep
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("ping")
        info.size, info.mode = 4, 0o755
        info.pax_headers = {"SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.cais": "yes"}
        tar.addfile(info, io.BytesIO(b"ping"))
    cais.register(put_image(cais, [buf.getvalue()], "gzip"), "caps:1")
    root_tree = _xattrs_in(cais, "caps:1", "ping")
    assert root_tree["security.capability"] == cap.encode("latin-1") and root_tree["user.cais"] == b"yes"

    out = io.BytesIO()
    save(cais, ["caps:1"], out)
    docker_peer.docker("load", input=out.getvalue())
    cid = docker_peer.docker("create", "caps:1", "/ping").stdout.decode().strip()
    exported = docker_peer.docker("export", cid).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        pax = tar.getmember("ping").pax_headers
    assert pax["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == cap.encode("latin-1")

    saved = docker_peer.docker("save", "caps:1").stdout
    load(back, io.BytesIO(saved))
    assert _xattrs_in(back, "caps:1", "ping")["security.capability"] == cap.encode("latin-1")
    docker_peer.docker("rm", cid)


def _xattrs_in(store, image, path):
    rw = "cais-img-x-" + os.urandom(4).hex()
    store.driver.create_rw(rw, store.top_layer_id(image))
    try:
        root = store.driver.mount(rw)
        try:
            full = os.path.join(root, path)
            return {k: os.getxattr(full, k, follow_symlinks=False) for k in os.listxattr(full, follow_symlinks=False)}
        finally:
            store.driver.unmount(rw)
    finally:
        store.driver.remove_rw(rw)


def test_cais_oci_layout_is_read_by_skopeo_and_umoci(two_stores, busybox_dir, tmp_root):
    import json

    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("skopeo/umoci not installed")
    cais, _ = two_stores
    image_id = bootstrap_busybox(cais)
    out = io.BytesIO()
    save(cais, ["busybox:latest"], out, format="oci")
    layout = os.path.join(tmp_root, "oci")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        tar.extractall(layout, filter="data")
    info = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:latest"], check=True,
                                     capture_output=True).stdout)
    assert info["rootfs"]["diff_ids"] == cais.inspect(image_id)["RootFS"]["Layers"]
    bundle = os.path.join(tmp_root, "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", bundle], check=True, capture_output=True)
    assert os.access(os.path.join(bundle, "rootfs", "bin", "busybox"), os.X_OK)
    assert os.readlink(os.path.join(bundle, "rootfs", "bin", "sh")) == "/bin/busybox"
