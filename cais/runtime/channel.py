"""The sync socket between the runtime and its init: one JSON object per line, both ways."""

from __future__ import annotations

import json
import os
from typing import Any

from cais.runtime.errors import RuntimeFailure


class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a.detach()), cls(b.detach())

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.fd, data):]

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
