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
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # the init is a session leader already
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


class ConsoleListener:
    """A console socket of our own, for a foreground `run`/`exec -t` without --console-socket."""

    def __init__(self) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="cais-runtime-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def master(self) -> int:
        conn, _ = self.sock.accept()
        try:
            return receive(conn)
        finally:
            conn.close()

    def close(self) -> None:
        import shutil

        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def proxy(master: int, pid: int) -> int:
    """Copy our stdin to the pty and the pty to our stdout until PID (our child) exits; its status."""
    import select
    import signal
    import tty

    interactive = os.isatty(0)
    saved = termios.tcgetattr(0) if interactive else None

    def resize(*_: object) -> None:
        if interactive:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))

    resize()
    previous = signal.signal(signal.SIGWINCH, resize)
    if interactive:
        tty.setraw(0)
    watched = [master, 0]
    status = None
    try:
        while status is None:
            ready, _, _ = select.select(watched, [], [], 0.1)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave closed
                    data = b""
                if data:
                    os.write(1, data)
                else:
                    watched = []
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    watched.remove(0)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done and not watched:
                status = raw
            elif done:
                status = raw
                _drain(master)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _drain(master: int) -> None:
    import select

    while select.select([master], [], [], 0.05)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(1, data)
