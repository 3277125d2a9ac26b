"""Garbage in: clear errors with docker's status codes, the daemon stays up, nothing leaks."""

from __future__ import annotations

import http.client
import json
import socket
import time

from tests.caisd import Caisd


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def call(daemon: Caisd, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict]:
    conn = _Conn(daemon.sock)
    try:
        conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        assert not data or response.getheader("Content-Type", "").startswith("application/json"), data
        return response.status, json.loads(data) if data else {}
    finally:
        conn.close()


def test_malformed_json_and_wrong_types(daemon: Caisd) -> None:
    status, body = call(daemon, "POST", "/v1.50/containers/create", b"{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body = call(daemon, "POST", "/v1.50/containers/create", b'["a list"]')
    assert status == 400
    status, body = call(daemon, "POST", "/v1.50/containers/create", json.dumps({"Image": 5}).encode())
    assert status == 400
    status, body = call(daemon, "POST", "/v1.50/containers/create",
                        json.dumps({"Image": "busybox", "Cmd": "true", "HostConfig": {"Memory": "lots"}}).encode())
    assert status == 400 and "Memory" in body["message"]
    status, body = call(daemon, "POST", "/v1.50/containers/create",
                        json.dumps({"Image": "busybox", "Cmd": ["true"], "Unknown": {"x": 1},
                                    "HostConfig": {"Whatever": True}}).encode())
    assert status == 201  # unknown fields are ignored, as docker does
    call(daemon, "DELETE", f"/v1.50/containers/{body['Id']}")


def test_unknown_objects_and_versions(daemon: Caisd) -> None:
    assert call(daemon, "GET", "/v1.50/containers/cais-en-missing/json")[0] == 404
    assert call(daemon, "GET", "/v1.50/images/cais-en-missing:1/json")[0] == 404
    assert call(daemon, "GET", "/v1.50/exec/0123/json")[0] == 404
    assert call(daemon, "GET", "/v1.50/no/such/endpoint")[0] == 404
    status, body = call(daemon, "GET", "/v1.12/containers/json")
    assert status == 400 and "too old" in body["message"]
    status, body = call(daemon, "GET", "/v9.99/containers/json")
    assert status == 400 and "too new" in body["message"]
    status, body = call(daemon, "POST", "/v1.50/containers/create",
                        json.dumps({"Image": "cais-en/bad:tag:x", "Cmd": ["true"]}).encode())
    assert status == 400 and "invalid reference format" in body["message"]
    status, body = call(daemon, "GET", "/v1.50/containers/json?filters=%7Bbad")
    assert status == 400
    status, body = call(daemon, "GET", "/v1.50/containers/json?limit=abc")
    assert status == 400


def test_conflicts(daemon: Caisd) -> None:
    cid = daemon.docker("run", "-d", "--name", "cais-en-conflict", "busybox", "sleep", "30").stdout.decode().strip()
    try:
        status, body = call(daemon, "POST", "/v1.50/containers/create?name=cais-en-conflict",
                            json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode())
        assert status == 409 and "already in use" in body["message"]
        status, body = call(daemon, "DELETE", f"/v1.50/containers/{cid}")
        assert status == 409
        status, body = call(daemon, "DELETE", "/v1.50/images/busybox")
        assert status == 409
    finally:
        daemon.docker("rm", "-f", cid)


def test_huge_body_and_headers(daemon: Caisd) -> None:
    status, body = call(daemon, "POST", "/v1.50/containers/create", b"{" + b" " * (20 << 20) + b"}")
    assert status == 413
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(daemon.sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        assert s.recv(64).split(b" ")[1] in (b"400", b"431")
    assert daemon.ping()


def test_clients_that_disconnect(daemon: Caisd) -> None:
    cid = daemon.docker("run", "-d", "busybox", "sh", "-c", "while true; do echo x; sleep 0.05; done").stdout
    cid = cid.decode().strip()
    try:
        for path in (f"/v1.50/containers/{cid}/logs?follow=1&stdout=1", f"/v1.50/containers/{cid}/stats",
                     "/v1.50/events", f"/v1.50/containers/{cid}/wait"):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(daemon.sock)
                method = "POST" if path.endswith("wait") else "GET"
                s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                s.recv(100)
        with socket.socket(socket.AF_UNIX) as s:  # a hijacked attach, dropped
            s.connect(daemon.sock)
            s.sendall(f"POST /v1.50/containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
                      "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
            assert s.recv(12) == b"HTTP/1.1 101"
        with socket.socket(socket.AF_UNIX) as s:  # half a request
            s.connect(daemon.sock)
            s.sendall(b"POST /v1.50/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)
        assert daemon.ping()
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", cid).stdout == b"true\n"
    finally:
        daemon.docker("rm", "-f", cid)


def test_tar_slip_is_refused(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io
    import tarfile
    cid = daemon.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("../../../../../../tmp/cais-en-escaped")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        status, body = call(daemon, "PUT", f"/v1.50/containers/{cid}/archive?path=/tmp", buf.getvalue(),
                            {"Content-Type": "application/x-tar"})
        assert status == 400
        # a symlink in the container pointing at the host's / is followed inside the container only
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            link = tarfile.TarInfo("escape")
            link.type = tarfile.SYMTYPE
            link.linkname = "/"
            tar.addfile(link)
        assert call(daemon, "PUT", f"/v1.50/containers/{cid}/archive?path=/tmp", buf.getvalue(),
                    {"Content-Type": "application/x-tar"})[0] == 200
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("cais-en-through-link")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        assert call(daemon, "PUT", f"/v1.50/containers/{cid}/archive?path=/tmp/escape/tmp", buf.getvalue(),
                    {"Content-Type": "application/x-tar"})[0] == 200
        import os
        assert not os.path.exists("/tmp/cais-en-escaped")
        assert not os.path.exists("/tmp/cais-en-through-link")
        assert daemon.docker("cp", f"{cid}:/tmp/cais-en-through-link", str(tmp_path / "x")).returncode == 0
    finally:
        daemon.docker("rm", "-f", cid)
