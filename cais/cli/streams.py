"""The client side of attach/exec: raw terminal, stdin pump, output demux, window size."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable

HEADER = struct.Struct(">BxxxI")


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    except OSError:
        return 24, 80


@contextlib.contextmanager
def raw_terminal(enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed before the attach
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def watch_resize(resize: Callable[[int, int], None]) -> None:
    resize(*terminal_size())
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGWINCH, lambda *_: resize(*terminal_size()))


def pump(sock, *, tty: bool, stdin: bool, close_write: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Copy stdin to the socket (in a thread) and the socket to stdout/stderr until it closes."""
    if stdin:
        def feed() -> None:
            fd = sys.stdin.fileno()
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    sock.sendall(data)
                if close_write:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        threading.Thread(target=feed, daemon=True).start()
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
        while len(buf) >= HEADER.size:
            stream, length = HEADER.unpack(buf[:HEADER.size])
            if len(buf) < HEADER.size + length:
                break
            data = buf[HEADER.size:HEADER.size + length]
            buf = buf[HEADER.size + length:]
            target = err if stream == 2 else out
            target.write(data)
            target.flush()
