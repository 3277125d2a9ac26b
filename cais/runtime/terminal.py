"""process.terminal: a pty made inside the container, its master sent over the console socket.

As runc does: the runtime connects to --console-socket, the init opens /dev/ptmx of the
container's devpts, sends the master with SCM_RIGHTS and makes the slave its controlling tty.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import termios

from cais.runtime.errors import RuntimeFailure


def connect(path: str) -> int:
    """A connected descriptor to the console socket at PATH (made by the caller of the runtime)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise RuntimeFailure(f"console socket {path}: {e.strerror}") from None
    return sock.detach()


def setup(console_fd: int, uid: int, gid: int) -> str:
    """Make a pty, send its master, make the slave our stdio and controlling tty; return its path."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    with contextlib.suppress(OSError):
        os.fchown(slave, uid, gid)
    sock = socket.socket(fileno=console_fd)
    try:
        socket.send_fds(sock, [b"/dev/ptmx"], [master])
    finally:
        sock.close()
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    return name


def receive(sock: socket.socket) -> int:
    """The pty master sent by a container's init (for callers that made the socket)."""
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise RuntimeFailure("console socket: no file descriptor received")
    return fds[0]
