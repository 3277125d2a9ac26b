"""A free loopback TCP port for a server a test starts (a peer such as docker-registry, or caisd).

The port is found by binding and closing, so another process could take it before the server
binds it; the servers these tests start take a port number, not a listening socket.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
