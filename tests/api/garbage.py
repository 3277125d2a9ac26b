"""A garbage client for caisd: every route, bad bodies, bad ids, bad query parameters.

`probe()` sends one request on a fresh unix-socket connection and returns what came back;
`problems()` says what is wrong with an answer by the project's rule (docker's status codes,
`{"message": …}`, no Python text, no hang).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from dataclasses import dataclass

# what a Python exception leaks into a message when it escapes unhandled
PYTHON_TEXT = re.compile(r"Traceback|File \"|\b(Key|Type|Attribute|Index|Value|Name|Unicode\w*|Overflow|Assertion|"
                         r"Recursion|ZeroDivision|NotImplemented|Lookup|Runtime)Error\b|NoneType|object has no "
                         r"attribute|not subscriptable|unhashable|<class |object is not|invalid literal for int|"
                         r"positional argument|keyword argument|Errno")


@dataclass
class Answer:
    status: int  # 0: no answer (timeout or connection dropped)
    content_type: str
    body: bytes
    error: str = ""

    def message(self) -> str:
        try:
            value = json.loads(self.body)
        except ValueError:
            return ""
        return value.get("message", "") if isinstance(value, dict) else ""


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def probe(sock: str, method: str, path: str, body: bytes | None = None, *, stream: bool = False,
          content_type: str = "application/json", timeout: float = 30) -> Answer:
    """One request. `stream`: a 200 answer's body is not read (the client goes away mid-stream)."""
    conn = _Conn(sock, timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if body is not None else {})
        response = conn.getresponse()
        ctype = response.getheader("Content-Type", "")
        if stream and response.status < 300:
            return Answer(response.status, ctype, b"")
        return Answer(response.status, ctype, response.read())
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, "", b"", f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def problems(answer: Answer, allow_500: bool = False, head: bool = False) -> str:
    """'' when the answer follows the rule, else what is wrong with it. `head`: the answer has no body."""
    if answer.status == 0:
        return f"no answer ({answer.error})"
    if answer.status >= 500 and not allow_500 and answer.status not in (501, 503):
        return f"status {answer.status}: {answer.body[:300]!r}"
    if answer.status >= 400 and not head:
        if not answer.content_type.startswith("application/json"):
            return f"status {answer.status} with Content-Type {answer.content_type!r}: {answer.body[:200]!r}"
        message = answer.message()
        if not message:
            return f"status {answer.status} without a message: {answer.body[:200]!r}"
        if PYTHON_TEXT.search(message):
            return f"status {answer.status}, Python in the message: {message[:300]!r}"
    return ""


def raw(sock: str, data: bytes, *, timeout: float = 10, read: bool = True) -> bytes:
    """Send raw bytes (a broken or truncated request) and return what the daemon answers, if anything."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


# bodies that are not a JSON object
NOT_OBJECTS = [b"{not json", b"[1, 2]", b'"a string"', b"42", b"true", b'{"Image": "busy', b"\xff\xfe\x00garbage",
               b"{" * 10000, b"[" * 100000]

# values of the wrong type (or out of range) for a field of any type
WRONG_VALUES: list[object] = ["lots", -1, 2**64, 1.5, True, [1, "x", None], {"a": {"b": [None]}}, "\u0000\u00e9"]

# path segments for an id, a name or a reference
BAD_IDS = ["%20", "a" * 300, "..", "%2E%2E", "%2e%2e%2f%2e%2e%2fetc", "%00", "a%00b", "%C3%A9t%C3%A9", "%FF%FE",
           "*", "-", "sha256:", "sha256:zz", "busybox:tag:x", "UPPER", "%0A"]

# query values for numbers, timestamps, booleans, filters
BAD_QUERY = ["abc", "-1", "99999999999999999999999", "1e9", "%00", "%7Bbad", "[]", "%FF", "nan", "inf", "0x10"]
