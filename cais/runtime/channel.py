"""The sync socket between the runtime and its init: one JSON object per line, both ways."""

from __future__ import annotations

import json
import os

from cais.runtime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a.detach()), cls(b.detach())

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode() + b"\n"
        if fds:  # the descriptors ride on the first bytes of the message
            import socket

            sock = socket.socket(fileno=self.fd)
            try:
                sent = socket.send_fds(sock, [data], fds)
            finally:
                sock.detach()
            data = data[sent:]
        while data:
            data = data[os.write(self.fd, data):]

    def recv_with_fds(self, maxfds: int = 8) -> tuple[dict[str, Any], list[int]] | None:
        """The next message and the descriptors sent with it."""
        import socket

        sock = socket.socket(fileno=self.fd)
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, maxfds)
        finally:
            sock.detach()
        if not data:
            return None
        self._buf += data
        message = self.recv()
        return (message, fds) if message is not None else None

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (the other side exited or exec'd)."""
        while b"\n" not in self._buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

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
