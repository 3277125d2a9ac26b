"""Attacks on the daemon through its API: path tricks in `docker cp`/archive PUT and GET, hostile
tarballs for `load`, volume names, bind sources through symlinks, oversized requests. Each is
refused or contained inside the container; nothing outside appears or leaks; the daemon stays up."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import tarfile
import tempfile
from collections.abc import Iterator

import pytest

from tests.api.test_bad_input import call
from tests.caisd import Caisd


def tar_of(*members: tuple[str, str, bytes | str]) -> bytes:
    """A tarball from (kind, name, data) with kind file|symlink|dir|hardlink; data is the link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"symlink": tarfile.SYMTYPE, "dir": tarfile.DIRTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = str(data)
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def ctr(daemon: Caisd) -> Iterator[str]:
    name = f"cais-se-{secrets.token_hex(4)}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "ln -s / /hostroot; ln -s /tmp /tmplink; ln -s ../../../../../../etc /up; sleep 600")
    try:
        yield name
    finally:
        daemon.docker("rm", "-f", name, check=False)


@pytest.fixture
def host_dir() -> Iterator[str]:
    """A host directory an escape would write into (/tmp/cais-se-…); must stay empty."""
    with tempfile.TemporaryDirectory(prefix="cais-se-host-", dir="/tmp") as d:
        yield d


def put(daemon: Caisd, name: str, path: str, data: bytes) -> tuple[int, dict]:
    return call(daemon, "PUT", f"/v1.50/containers/{name}/archive?path={path}", data,
                {"Content-Type": "application/x-tar"})


def test_archive_put_with_dotdot_stays_inside(daemon: Caisd, ctr: str, host_dir: str) -> None:
    rel = "../" * 12 + host_dir.lstrip("/")
    status, _ = put(daemon, ctr, "/tmp", tar_of(("file", f"{rel}/escaped", b"x")))
    assert not os.listdir(host_dir)
    assert status in (200, 400, 403, 500)
    assert daemon.ping()


def test_archive_put_through_container_symlinks_stays_inside(daemon: Caisd, ctr: str, host_dir: str) -> None:
    # the destination path itself goes through a symlink to / inside the container
    status, _ = put(daemon, ctr, f"/hostroot{host_dir}", tar_of(("file", "escaped", b"x")))
    assert not os.listdir(host_dir)
    # a symlink entry followed by a file under it
    put(daemon, ctr, "/", tar_of(("symlink", "evil", host_dir), ("file", "evil/escaped", b"x")))
    put(daemon, ctr, "/", tar_of(("symlink", "evil2", "../" * 12 + host_dir.lstrip("/")),
                                 ("file", "evil2/escaped", b"x")))
    # a hard link to a host file
    put(daemon, ctr, "/", tar_of(("hardlink", "passwd-link", "/etc/passwd")))
    assert not os.listdir(host_dir)
    # a symlink to a directory that exists in the container: followed there (as docker's chrooted untar)
    name = f"cais-se-{secrets.token_hex(4)}"
    status, _ = put(daemon, ctr, "/", tar_of(("symlink", "evil3", "/tmp"), ("file", f"evil3/{name}", b"x")))
    assert status == 200
    assert not os.path.exists(f"/tmp/{name}")
    assert daemon.docker("exec", ctr, "cat", f"/tmp/{name}").stdout == b"x"  # in the container's own /tmp
    assert daemon.ping()


def test_docker_cp_into_symlinks_stays_inside(daemon: Caisd, ctr: str, host_dir: str) -> None:
    with tempfile.TemporaryDirectory(prefix="cais-se-src-") as src:
        path = os.path.join(src, "payload")
        with open(path, "w") as f:
            f.write("payload")
        daemon.docker("cp", path, f"{ctr}:/hostroot{host_dir}/", check=False)
        daemon.docker("cp", path, f"{ctr}:/up/cais-se-payload", check=False)
    assert not os.listdir(host_dir)
    assert not os.path.exists("/etc/cais-se-payload")


def test_archive_get_cannot_read_host_files(daemon: Caisd, ctr: str, host_dir: str) -> None:
    secret = os.path.join(host_dir, "secret")
    with open(secret, "w") as f:
        f.write("cais-se-host-secret")
    daemon.docker("exec", ctr, "ln", "-s", secret, "/leak")
    for path in ("/leak", f"/hostroot{secret}", "/" + "../" * 12 + secret.lstrip("/"), f"/proc/1/root{secret}",
                 f"/proc/self/root{secret}"):
        status, data = _raw_get(daemon, f"/v1.50/containers/{ctr}/archive?path={path}")
        assert b"cais-se-host-secret" not in data, path
    with tempfile.TemporaryDirectory(prefix="cais-se-out-") as out:
        daemon.docker("cp", f"{ctr}:/leak", out, check=False)
        daemon.docker("cp", "-L", f"{ctr}:/leak", out, check=False)
        for dirpath, _, files in os.walk(out):
            for name in files:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    with open(p, "rb") as f:
                        assert b"cais-se-host-secret" not in f.read()
    assert daemon.ping()


def _raw_get(daemon: Caisd, path: str) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(daemon.sock)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    return int(data.split(b" ", 2)[1]), data


def test_load_with_hostile_tarball_writes_nothing_outside(daemon: Caisd, host_dir: str) -> None:
    rel = "../" * 12 + host_dir.lstrip("/")
    for data in (tar_of(("file", f"{rel}/escaped", b"x")),
                 tar_of(("symlink", "manifest.json", "/etc/passwd")),
                 tar_of(("symlink", "blobs", host_dir), ("file", "blobs/escaped", b"x")),
                 tar_of(("file", "manifest.json", b'[{"Config": "../../../../etc/passwd", "Layers": []}]'))):
        status, body = call(daemon, "POST", "/v1.50/images/load?quiet=1", data, {"Content-Type": "application/x-tar"})
        assert status >= 400 or "error" in json.dumps(body).lower(), body  # refused, in the status or the stream
        assert not os.listdir(host_dir)
    assert daemon.ping()


@pytest.mark.parametrize("name", ["../cais-se-evil", "cais-se/../../x", "/tmp/cais-se", ".", "..", "a" * 300])
def test_volume_names_cannot_be_paths(daemon: Caisd, name: str) -> None:
    status, body = call(daemon, "POST", "/v1.50/volumes/create", json.dumps({"Name": name}).encode())
    assert status == 400, body
    assert daemon.ping()


def test_bind_source_symlink_and_mount_destination_symlink(daemon: Caisd, host_dir: str) -> None:
    target = os.path.join(host_dir, "real")
    os.mkdir(target)
    link = os.path.join(host_dir, "link")
    os.symlink(target, link)
    # the user's own host symlink is the user's choice: followed, as docker does, once
    daemon.docker("run", "--rm", "-v", f"{link}:/mnt", "busybox", "touch", "/mnt/made")
    assert os.listdir(target) == ["made"]
    # a destination that is a symlink in the image out to the host: mounted inside the rootfs
    out = daemon.docker("run", "--rm", "-v", f"{target}:/up/cais-se-mnt", "busybox", "true", check=False)
    assert not os.path.exists("/etc/cais-se-mnt")
    assert out.returncode in (0, 125, 126, 127)
    # relative bind sources are names (docker's CLI makes ./x absolute itself), and names are not paths
    for binds in (["../../etc:/mnt"], ["etc/../..:/mnt"]):
        body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": binds}}
        status, reply = call(daemon, "POST", "/v1.50/containers/create", json.dumps(body).encode())
        assert status == 400, reply


def test_oversized_requests_are_refused(daemon: Caisd) -> None:
    big = b'{"Image": "busybox", "Cmd": ["true"], "Env": ["' + b"x" * (64 << 20) + b'"]}'
    try:
        status, _ = call(daemon, "POST", "/v1.50/containers/create", big)
        assert status == 413
    except (ConnectionError, OSError):
        pass  # the server may cut the connection as soon as it has seen too much
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(daemon.sock)
        with contextlib.suppress(BrokenPipeError):  # refused before the whole header was read
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        reply = s.recv(64)
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431", b"HTTP/1.0 400")) or reply == b"", reply
    assert daemon.ping()


@pytest.mark.parametrize("path", ["/v1.50/containers/..%2F..%2F..%2Fetc%2Fpasswd/json",
                                  "/v1.50/containers/../../../etc/passwd/json",
                                  "/v1.50/images/..%2F..%2Fetc%2Fshadow/json",
                                  "/v1.50/volumes/..%2F..%2F..%2Fetc",
                                  "/v1.50/containers/%2Fetc%2Fpasswd/archive?path=/"])
def test_path_tricks_in_urls(daemon: Caisd, path: str) -> None:
    status, data = _raw_get(daemon, path)
    assert status in (400, 404), data[:300]
    assert b"root:x:0:0" not in data
    assert daemon.ping()


def test_archive_get_symlink_swap_race_cannot_reach_the_host(daemon: Caisd, host_dir: str) -> None:
    """CVE-2018-15664: the container swaps a checked directory for a symlink to / while the daemon
    copies; the container is frozen for the copy, so the daemon reads the decoy or nothing."""
    secret = os.path.join(host_dir, "secret")
    with open(secret, "w") as f:
        f.write("cais-se-host-secret")
    name = f"cais-se-{secrets.token_hex(4)}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  f"mkdir -p /link{host_dir} && echo decoy > /link{secret}; "
                  "while true; do mv /link /d; ln -s / /link; rm /link; mv /d /link; done")
    try:
        for _ in range(60):
            _, data = _raw_get(daemon, f"/v1.50/containers/{name}/archive?path=/link{secret}")
            assert b"cais-se-host-secret" not in data
        state = json.loads(daemon.docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["Running"] and not state["Paused"]  # thawed after each copy
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_build_context_cannot_reach_host_files(daemon: Caisd, host_dir: str) -> None:
    secret = os.path.join(host_dir, "secret")
    with open(secret, "w") as f:
        f.write("cais-se-host-secret")
    tag = f"cais-se-build-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="cais-se-ctx-") as ctx:
        os.symlink(secret, os.path.join(ctx, "link"))
        os.symlink(host_dir, os.path.join(ctx, "dirlink"))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM busybox\nCOPY link /x\nCOPY dirlink/ /y/\n")
        built = daemon.docker("build", "-q", "-t", tag, ctx, check=False, timeout=120)
        try:
            if built.returncode == 0:
                out = daemon.docker("run", "--rm", tag, "sh", "-c", "cat /x /y/* /y/*/* 2>&1; true").stdout
                assert b"cais-se-host-secret" not in out
            else:
                assert b"Traceback" not in built.stderr
            # a hand-made context: `..` members and a Dockerfile reaching out with COPY ../
            evil = tar_of(("file", "Dockerfile", f"FROM busybox\nCOPY ../../../..{secret} /z\n".encode()),
                          ("file", "../../../../" + host_dir.lstrip("/") + "/escaped", b"x"))
            status, body = call(daemon, "POST", f"/v1.50/build?t={tag}-2&q=1", evil,
                                {"Content-Type": "application/x-tar"})
            assert not os.path.exists(os.path.join(host_dir, "escaped"))
            assert "cais-se-host-secret" not in json.dumps(body)
        finally:
            daemon.docker("rmi", "-f", tag, f"{tag}-2", check=False)
    assert daemon.ping()
