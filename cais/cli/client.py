"""A small Docker Engine API client on http.client (fast to import): JSON calls, streams, hijack."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from collections.abc import Iterator

API_VERSION = "1.50"
DEFAULT_HOST = "unix:///run/cais/cais.sock"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _query(params: dict | None) -> str:
    if not params:
        return ""
    items = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        if isinstance(value, list):
            items += [(key, str(v)) for v in value]
        elif isinstance(value, dict):
            items.append((key, json.dumps(value)))
        else:
            items.append((key, str(value)))
    return "?" + urllib.parse.urlencode(items) if items else ""


class Client:
    def __init__(self, host: str) -> None:
        self.host = host
        if host.startswith("unix://"):
            self.kind, self.address = "unix", host[len("unix://"):]
        elif host.startswith("tcp://") or host.startswith("https://"):
            self.kind, self.address = "tcp", host.split("://", 1)[1].rstrip("/")
        else:
            raise ApiError(0, f"invalid host {host!r}: use unix:///path or tcp://host:port")

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        if self.kind == "unix":
            return _UnixConnection(self.address, timeout)
        host, _, port = self.address.rpartition(":")
        cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
        ctx = ssl.create_default_context(cafile=os.path.join(cert_path, "ca.pem"))
        ctx.load_cert_chain(os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem"))
        return http.client.HTTPSConnection(host, int(port or 2376), context=ctx, timeout=timeout)

    def reachable(self) -> bool:
        try:
            self.call("GET", "/_ping", raw=True, timeout=5)
            return True
        except (OSError, ApiError, http.client.HTTPException):
            return False

    def request(self, method: str, path: str, params: dict | None = None, body: object = None,
                headers: dict | None = None, timeout: float | None = None) -> http.client.HTTPResponse:
        conn = self._connection(timeout)
        hdrs = dict(headers or {})
        data: bytes | None = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif hasattr(body, "read"):
            data = body  # type: ignore[assignment]
            hdrs.setdefault("Transfer-Encoding", "chunked")
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = f"/v{API_VERSION}{path}{_query(params)}"
        conn.request(method, url, body=data, headers=hdrs, encode_chunked=hasattr(body, "read"))
        response = conn.getresponse()
        if response.status >= 400:
            raw = response.read()
            try:
                message = json.loads(raw).get("message", raw.decode())
            except ValueError:
                message = raw.decode(errors="replace").strip()
            raise ApiError(response.status, message)
        return response

    def call(self, method: str, path: str, params: dict | None = None, body: object = None, *, raw: bool = False,
             headers: dict | None = None, timeout: float | None = None) -> object:
        response = self.request(method, path, params, body, headers, timeout)
        data = response.read()
        if raw:
            return data
        if not data.strip():
            return None
        return json.loads(data)

    def json_lines(self, method: str, path: str, params: dict | None = None, body: object = None,
                   headers: dict | None = None) -> Iterator[dict]:
        response = self.request(method, path, params, body, headers)
        while line := response.readline():
            line = line.strip()
            if line:
                yield json.loads(line)

    def hijack(self, path: str, params: dict | None = None, body: object = None) -> socket.socket:
        """POST with `Upgrade: tcp`; return the raw socket once the daemon answered 101."""
        conn = self._connection()
        conn.connect()
        sock = conn.sock
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST /v{API_VERSION}{path}{_query(params)} HTTP/1.1\r\nHost: localhost\r\n"
                f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ApiError(0, "the daemon closed the connection")
            buf += chunk
        header, _, rest = buf.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        if status >= 400:
            try:
                message = json.loads(rest).get("message", rest.decode())
            except ValueError:
                message = rest.decode(errors="replace")
            raise ApiError(status, message)
        return _PrefixedSocket(sock, rest)  # type: ignore[return-value]


class _PrefixedSocket:
    """A socket whose first bytes were already read with the response headers."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self.sock = sock
        self.prefix = prefix

    def recv(self, n: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:n], self.prefix[n:]
            return data
        return self.sock.recv(n)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)
