"""The client side of attach/exec: raw terminal, stdin pump, output demux, window size.

Without a TTY the daemon multiplexes stdout and stderr with docker's 8-byte header: the stream
(1 stdout, 2 stderr), three zero bytes, the payload's length (big-endian, 4 bytes). Imports stay
at what a non-interactive `run` needs: termios, signal and threading only with a TTY or stdin.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # collections.abc imports collections (~2 ms of a start); annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable

HEADER_SIZE = 8
_SHUT_WR = 1  # socket.SHUT_WR, without importing socket for it


def parse_header(header: bytes) -> tuple[int, int]:
    """(stream, payload length) from one of docker's 8-byte frame headers."""
    return header[0], int.from_bytes(header[4:8], "big")


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    except OSError:
        return 24, 80


class raw_terminal:
    """Put stdin's terminal in raw mode for the block (when `enabled` and stdin is a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.saved: list | None = None

    def __enter__(self) -> None:
        if not self.enabled or not sys.stdin.isatty():
            return
        import termios
        import tty
        fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed before the attach

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def watch_resize(resize: Callable[[int, int], None]) -> None:
    import contextlib
    import signal
    resize(*terminal_size())
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGWINCH, lambda *_: resize(*terminal_size()))


def _feed(sock, close_write: bool) -> None:  # type: ignore[no-untyped-def]
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sock.sendall(data)
        if close_write:
            sock.shutdown(_SHUT_WR)
    except OSError:
        pass


def pump(sock, *, tty: bool, stdin: bool, close_write: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Copy stdin to the socket (in a thread) and the socket to stdout/stderr until it closes."""
    if stdin:
        import threading
        threading.Thread(target=_feed, args=(sock, close_write), daemon=True).start()
    out, err = sys.stdout.buffer, sys.stderr.buffer
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (OSError, ValueError):
            break
        if not chunk:
            break
        if tty:
            out.write(chunk)
            out.flush()
            continue
        buf += chunk
        while len(buf) >= HEADER_SIZE:
            stream, length = parse_header(buf)
            if len(buf) < HEADER_SIZE + length:
                break
            data = buf[HEADER_SIZE:HEADER_SIZE + length]
            buf = buf[HEADER_SIZE + length:]
            target = err if stream == 2 else out
            target.write(data)
            target.flush()
