"""A small Docker Engine API client: HTTP/1.1 over the daemon's socket, JSON calls, streams, hijack.

Written on the `_socket` C module rather than `http.client`, whose `email`, `ssl` and `urllib`
imports cost a CLI start 20–30 ms of CPU (and `socket.py`, which imports `selectors`), with JSON
through `cais.fastjson` (`json` imports `re` and `enum`: ~10 ms): requests are plain HTTP/1.1 with
keep-alive (one idle connection is reused), responses are read by Content-Length, chunked
encoding or until close. TLS (tcp:// hosts, mutual TLS with docker's DOCKER_CERT_PATH files)
imports `ssl` only when used.
"""

from __future__ import annotations

import _socket
import os

from cais import fastjson

TYPE_CHECKING = False  # collections.abc imports collections (~2 ms of a start); annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Iterator

API_VERSION = "1.50"
DEFAULT_HOST = "unix:///run/cais/cais.sock"
_MAX_LINE = 65536  # a status, header or chunk-size line longer than this is not HTTP
_NO_ANSWER = "the daemon closed the connection without answering"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(ConnectionError):
    """The daemon's answer is not HTTP, or ended too early."""


def _quote(text: str) -> str:
    """Percent-encoding for a query string (urllib.parse.quote_plus, without importing urllib)."""
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
    if all(c in safe for c in text):
        return text
    return "".join(chr(b) if chr(b) in safe else "+" if b == 0x20 else f"%{b:02X}" for b in text.encode())


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
            items.append((key, fastjson.dumps(value)))
        else:
            items.append((key, str(value)))
    return "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in items) if items else ""


def _older(version: str, than: str) -> bool:
    """Whether API version VERSION ("1.41") is a well-formed one older than THAN."""
    major, dot, minor = version.partition(".")
    if not (major.isdigit() and dot and minor.isdigit()):
        return False
    mine = than.split(".")
    return (int(major), int(minor)) < (int(mine[0]), int(mine[1]))


class Connection:
    """A socket with a read buffer: lines for the HTTP head and chunk sizes, bytes for bodies.
    The buffer is consumed by moving an offset: many small reads (8-byte frame headers) do not
    copy what remains of it each time."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0
        self.reused = False  # kept alive from an earlier request: the daemon may have closed it

    def buffered(self) -> bool:
        return self._pos < len(self._buf)

    def take_buffered(self) -> bytes:
        data = self._buf[self._pos:]
        self._buf, self._pos = b"", 0
        return data

    def read_some(self, limit: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self.sock.recv(65536), 0
        data = self._buf[self._pos:self._pos + limit]
        self._pos += len(data)
        return data

    def read_line(self) -> bytes:
        end = self._buf.find(b"\n", self._pos)
        while end < 0:
            if len(self._buf) - self._pos > _MAX_LINE:
                raise ProtocolError("malformed answer from the daemon: line too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.take_buffered()
            self._buf, self._pos = self._buf[self._pos:] + chunk, 0
            end = self._buf.find(b"\n")
        line = self._buf[self._pos:end + 1]
        self._pos = end + 1
        return line

    def close(self) -> None:
        self.sock.close()


class Response:
    """The status, headers and body of one answer; the body is read with read/read1/readline."""

    def __init__(self, client: Client, conn: Connection, method: str) -> None:
        self._client, self._conn = client, conn
        try:
            status_line = conn.read_line()
        except ConnectionResetError:  # closed with our request unread
            status_line = b""
        if not status_line:
            raise ProtocolError(_NO_ANSWER)
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"malformed answer from the daemon: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2].strip() if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        while (line := conn.read_line()) not in (b"\r\n", b"\n"):
            if not line:
                raise ProtocolError("the daemon closed the connection in the middle of an answer")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                self.headers[name.strip().lower()] = value.strip()
        self._pending = b""  # body bytes received but not yet read, from offset _ppos
        self._ppos = 0
        self._left = 0
        self._keep = self.headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._mode = "length"
        elif self.headers.get("transfer-encoding", "").lower() == "chunked":
            self._mode = "chunked"
        elif "content-length" in self.headers:
            self._mode = "length"
            length = self.headers["content-length"]
            if not length.isdigit():
                raise ProtocolError(f"malformed answer from the daemon: Content-Length {length[:40]!r}")
            self._left = int(length)
        else:
            self._mode, self._keep = "close", False
        self._done = self.status == 101  # an upgrade: the connection is a raw stream now
        if self._mode == "length" and self._left == 0:
            self._finish()

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._keep and self.status != 101:
            self._client._release(self._conn)
        else:
            self._conn.close()

    def _piece(self, limit: int = 65536) -> bytes:
        """The next bytes of the body as sent (chunk framing removed), b"" at its end."""
        if self._done:
            return b""
        conn = self._conn
        if self._mode == "close":
            data = conn.read_some(limit)
            if not data:
                self._finish()
            return data
        if self._mode == "chunked" and self._left == 0:
            line = conn.read_line()
            try:
                self._left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"malformed answer from the daemon: chunk size {line[:40]!r}") from None
            if self._left == 0:
                while conn.read_line() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._finish()
                return b""
        data = conn.read_some(min(limit, self._left))
        if not data:
            self._conn.close()
            self._done = True
            raise ProtocolError("the daemon closed the connection in the middle of an answer")
        self._left -= len(data)
        if self._left == 0:
            if self._mode == "chunked":
                conn.read_line()  # the CRLF after the chunk's data
            else:
                self._finish()
        return data

    def _take_pending(self, n: int = -1) -> bytes:
        end = len(self._pending) if n < 0 else self._ppos + n
        data = self._pending[self._ppos:end]
        self._ppos += len(data)
        return data

    def _add_pending(self, piece: bytes) -> None:
        self._pending, self._ppos = self._pending[self._ppos:] + piece, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._take_pending()]
            while piece := self._piece():
                parts.append(piece)
            return b"".join(parts)
        if self._ppos >= len(self._pending):  # the usual case: straight from the connection
            piece = self._piece(n)
            if len(piece) == n or not piece:
                return piece
            self._add_pending(piece)
        while len(self._pending) - self._ppos < n and (piece := self._piece(n - len(self._pending) + self._ppos)):
            self._add_pending(piece)
        return self._take_pending(n)

    def read1(self, n: int = 65536) -> bytes:
        if self._ppos < len(self._pending):
            return self._take_pending(n)
        return self._piece(n)

    def readline(self) -> bytes:
        end = self._pending.find(b"\n", self._ppos)
        while end < 0:
            piece = self._piece()
            if not piece:
                return self._take_pending()
            self._add_pending(piece)
            end = self._pending.find(b"\n")
        return self._take_pending(end + 1 - self._ppos)

    def fileno(self) -> int:
        return self._conn.sock.fileno()

    def buffered(self) -> bool:
        """True when body bytes were already received (a select() on fileno() would miss them)."""
        return self._ppos < len(self._pending) or self._conn.buffered()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.close()


class Client:
    def __init__(self, host: str) -> None:
        self.host = host
        self._idle: Connection | None = None
        # docker's CLI pings the daemon before every command to pick the API version both speak;
        # caisd speaks ours, so the version is only negotiated when a daemon refuses it (dockerd
        # 20.10: 1.41). DOCKER_API_VERSION pins it, as for docker.
        self.pinned = os.environ.get("DOCKER_API_VERSION", "")
        self.version = self.pinned or API_VERSION
        if host.startswith("unix://"):
            self.kind, self.address = "unix", host[len("unix://"):]
        elif host.startswith("tcp://") or host.startswith("https://"):
            self.kind, self.address = "tcp", host.split("://", 1)[1].rstrip("/")
        else:
            raise ApiError(0, f"invalid host {host!r}: use unix:///path or tcp://host:port")

    def _open(self, timeout: float | None = None) -> Connection:
        if self.kind == "unix":
            # the C module: socket.py would import selectors and enum for what a client never uses
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            return Connection(sock)
        import socket
        import ssl  # only for tcp:// hosts: ~10 ms of a start
        host, _, port = self.address.rpartition(":")
        cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
        try:
            ctx = ssl.create_default_context(cafile=os.path.join(cert_path, "ca.pem"))
            ctx.load_cert_chain(os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem"))
        except (OSError, ssl.SSLError) as e:
            raise ConnectionError(f"TLS: ca.pem, cert.pem and key.pem in {cert_path} (DOCKER_CERT_PATH): "
                                  f"{e.strerror or e}") from None
        raw = socket.create_connection((host.strip("[]"), int(port or 2376)), timeout)
        try:
            return Connection(ctx.wrap_socket(raw, server_hostname=host.strip("[]")))
        except ssl.SSLError as e:
            raw.close()
            raise ConnectionError(f"TLS: {e.reason or e}") from None
        except BaseException:
            raw.close()
            raise

    def _release(self, conn: Connection) -> None:
        if self._idle is None and not conn.buffered():
            self._idle = conn
        else:
            conn.close()

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def connectable(self) -> bool:
        """Whether a daemon listens on the socket; the connection is kept for the first request
        (no /_ping round trip before every command)."""
        try:
            conn = self._open(5)
        except OSError:
            return False
        conn.sock.settimeout(None)
        self._release(conn)
        return True

    def _head(self, method: str, url: str, headers: dict) -> bytes:
        host = "localhost" if self.kind == "unix" else self.address
        lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", "User-Agent: cais-cli"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, method: str, path: str, params: dict | None = None, body: object = None,
             headers: dict | None = None, timeout: float | None = None) -> Connection:
        """Write a request and return its connection; `answer()` reads the response. Split in two
        so that a caller can send several requests before waiting for any answer."""
        hdrs = dict(headers or {})
        data: bytes | None = None
        stream = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif hasattr(body, "read"):
            stream = body
            hdrs.setdefault("Transfer-Encoding", "chunked")
        elif body is not None:
            data = fastjson.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if data is not None or (stream is None and method in ("POST", "PUT")):
            hdrs["Content-Length"] = str(len(data or b""))
        head = self._head(method, f"{self._prefix()}{path}{_query(params)}", hdrs)
        conn, self._idle = self._idle, None
        if conn is not None:
            conn.sock.settimeout(timeout)
            conn.reused = True
            try:
                self._write(conn, head, data, stream)
                return conn
            except OSError:  # the daemon closed the idle connection: a fresh one
                conn.close()
        conn = self._open(timeout)
        try:
            self._write(conn, head, data, stream)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _write(conn: Connection, head: bytes, data: bytes | None, stream: object) -> None:
        if stream is None:
            conn.sock.sendall(head + (data or b""))
            return
        conn.sock.sendall(head)
        while chunk := stream.read(1 << 16):  # type: ignore[attr-defined]
            conn.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.sock.sendall(b"0\r\n\r\n")

    def answer(self, conn: Connection, method: str = "GET") -> Response:
        """The response to the request sent on `conn`; ApiError for a 4xx/5xx status."""
        try:
            response = Response(self, conn, method)
        except BaseException:
            conn.close()
            raise
        if response.status >= 400:
            raw = response.read()
            try:
                message = fastjson.loads(raw).get("message", raw.decode())
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip()
            raise ApiError(response.status, message)
        return response

    def request(self, method: str, path: str, params: dict | None = None, body: object = None,
                headers: dict | None = None, timeout: float | None = None) -> Response:
        conn = self.send(method, path, params, body, headers, timeout)
        try:
            return self.answer(conn, method)
        except ProtocolError as e:
            # a kept-alive connection the daemon closed before reading the request: once more on
            # a fresh one (a streamed body cannot be sent twice)
            if not conn.reused or hasattr(body, "read") or str(e) != _NO_ANSWER:
                raise
        except ApiError as e:
            # refused before it was handled: once more in the daemon's version
            if hasattr(body, "read") or not self._negotiate(e):
                raise
        return self.answer(self.send(method, path, params, body, headers, timeout), method)

    def _prefix(self) -> str:
        return f"/v{self.version}" if self.version else ""

    def _negotiate(self, refused: ApiError) -> bool:
        """After a daemon refused our API version as too new: take the version its /_ping
        announces (docker's negotiation). False when there is nothing to negotiate."""
        if refused.status != 400 or "is too new" not in str(refused) or self.pinned or self.version != API_VERSION:
            return False
        self.version = ""  # /_ping unversioned: a daemon answers it whatever it speaks
        try:
            response = self.request("GET", "/_ping")
            response.read()
        except (ApiError, OSError):
            return False
        finally:
            self.version = API_VERSION
        theirs = response.getheader("api-version", "")
        if not _older(theirs, API_VERSION):
            return False
        self.version = theirs
        return True

    def call(self, method: str, path: str, params: dict | None = None, body: object = None, *, raw: bool = False,
             headers: dict | None = None, timeout: float | None = None) -> object:
        response = self.request(method, path, params, body, headers, timeout)
        data = response.read()
        if raw:
            return data
        if not data.strip():
            return None
        try:
            return fastjson.loads(data)
        except ValueError:
            raise ProtocolError(f"malformed JSON from the daemon: {data[:80]!r}") from None

    def json_lines(self, method: str, path: str, params: dict | None = None, body: object = None,
                   headers: dict | None = None) -> Iterator[dict]:
        response = self.request(method, path, params, body, headers)
        while line := response.readline():
            line = line.strip()
            if line:
                yield fastjson.loads(line)

    def send_hijack(self, path: str, params: dict | None = None, body: object = None) -> Connection:
        """Send a POST with `Upgrade: tcp` on a connection of its own; `hijacked()` finishes it."""
        data = fastjson.dumps(body).encode() if body is not None else b""
        head = self._head("POST", f"{self._prefix()}{path}{_query(params)}", {
            "Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "application/json",
            "Content-Length": str(len(data))})
        conn = self._open()
        try:
            conn.sock.sendall(head + data)
        except BaseException:
            conn.close()
            raise
        return conn

    def hijacked(self, conn: Connection) -> HijackedStream:
        """The raw stream once the daemon answered 101 (or 200) to a hijack request."""
        response = self.answer(conn, "POST")
        response._done = True  # the socket is the stream's now
        return HijackedStream(conn)

    def hijack(self, path: str, params: dict | None = None, body: object = None) -> HijackedStream:
        """POST with `Upgrade: tcp`; return the raw stream once the daemon answered."""
        return self.hijacked(self.send_hijack(path, params, body))


class HijackedStream:
    """The socket of an upgraded connection, with the bytes that arrived with the answer's head."""

    def __init__(self, conn: Connection) -> None:
        self.sock = conn.sock
        self.prefix = conn.take_buffered()

    def recv(self, n: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:n], self.prefix[n:]
            return data
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
