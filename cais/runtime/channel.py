"""The sync socket between the runtime and its init: length-prefixed messages, both ways.

Both ends run the same interpreter (the init is exec'd from a sealed copy of the runtime's own
binary) and trust each other, so a message is a dict in marshal's format, with a 4-byte length
before it: marshal is built in, where json (and re, enum...) and socket.py (enum, selectors...)
would be imports each init pays for before it can start. _socket is socket.py's C half.
"""

from __future__ import annotations

import marshal
import os
import sys

from cais.runtime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_MAX = 1 << 24  # a job carries the whole config.json; anything longer is not ours
_INT = 4  # a descriptor in SCM_RIGHTS is a C int (packed by hand: array imports collections)


class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        import _socket

        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        return cls(a.detach()), cls(b.detach())

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        body = marshal.dumps(message)
        data = len(body).to_bytes(4, "little") + body
        if fds:  # the descriptors ride on the first bytes of the message
            import _socket

            sock = _socket.socket(fileno=self.fd)
            rights = b"".join(fd.to_bytes(_INT, sys.byteorder) for fd in fds)
            try:
                sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
            finally:
                sock.detach()
            data = data[sent:]
        while data:
            data = data[os.write(self.fd, data):]

    def recv_with_fds(self, maxfds: int = 8) -> tuple[dict[str, Any], list[int]] | None:
        """The next message and the descriptors sent with it."""
        import _socket

        fds = []
        sock = _socket.socket(fileno=self.fd)
        try:
            data, ancdata, _, _ = sock.recvmsg(1 << 20, _socket.CMSG_SPACE(maxfds * _INT))
        finally:
            sock.detach()
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(payload[i:i + _INT], sys.byteorder)
                        for i in range(0, len(payload) - _INT + 1, _INT)]
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        self._buf += data
        message = self.recv()
        return (message, fds) if message is not None else None

    def _fill(self, size: int) -> bool:
        while len(self._buf) < size:
            chunk = os.read(self.fd, max(65536, size - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (the other side exited or exec'd)."""
        if not self._fill(4):
            return None
        size = int.from_bytes(self._buf[:4], "little")
        if size > _MAX or not self._fill(4 + size):
            return None
        body, self._buf = self._buf[4:4 + size], self._buf[4 + size:]
        return marshal.loads(body)

    def expect(self, kind: str) -> dict[str, Any]:
        message = self.recv()
        if message is None:
            raise RuntimeFailure(f"container init exited before {kind}")
        if "error" in message:
            raise RuntimeFailure(message["error"])
        if message.get("type") != kind:
            raise RuntimeFailure(f"container init: expected {kind}, got {message.get('type')}")
        return message

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
