"""Network namespaces as files: create one bound to a path, open sockets or run code inside one, remove it.

A network namespace is per thread on Linux. A socket stays in the namespace it was opened in for
its whole life, wherever it is used afterwards: socket_in opens one there from the calling thread
(setns there and back, as libnetwork's nsInvoke), which is all the netlink and DNS work needs.
Code that must run inside (pyroute2, whose event loop must not meet the daemon's) runs in a
short-lived thread that setns'd into it; subprocesses forked by that thread (`nft`) inherit it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from cais.linux.mount import MNT_DETACH, MS_BIND, mount, umount
from cais.linux.namespaces import CLONE_NEWNET, setns, unshare

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    result: list = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # re-raised in the caller
            error.append(e)

    thread = threading.Thread(target=body, name="cais-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def create(path: str, source: str | None = None) -> None:
    """A new, empty network namespace kept alive by a bind mount on `path`; with `source` (e.g.
    /proc/PID/ns/net of a created container) that existing namespace is bound there instead."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def body() -> None:
        unshare(CLONE_NEWNET)  # this thread only: the thread is thrown away afterwards
        mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, MS_BIND)

    try:
        if source is None:
            _in_thread(body)
        else:
            mount(source, path, None, MS_BIND)
    except BaseException:
        os.unlink(path)
        raise


def remove(path: str) -> None:
    """Drop the namespace bound on `path` (its interfaces go with it once nothing else holds it)."""
    with contextlib.suppress(OSError):
        umount(path, MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run_in(path: str | None, fn: Callable[[], T]) -> T:
    """fn() in a thread inside the namespace bound on `path` (None: the caller's own namespace).

    Always a fresh thread: pyroute2 runs its own event loop, which must not meet the daemon's.
    """
    if path is None:
        return _in_thread(fn)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def body() -> T:
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(body)


def socket_in(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket of the namespace bound on `path`, opened by the calling thread, which enters that
    namespace for the socket(2) call only (a thread is one task: nothing else runs in it meanwhile)."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNET)
            try:
                return socket.socket(family, kind, proto)
            finally:
                setns(own, CLONE_NEWNET)  # cannot fail: a namespace this thread was in, root holding its fd
        finally:
            os.close(own)
    finally:
        os.close(target)


def set_sysctl(name: str, value: str) -> None:
    """Write a net.* sysctl of the calling thread's network namespace (/proc/sys/net is per netns)."""
    with open(f"/proc/sys/{name.replace('.', '/')}", "w") as f:
        f.write(value)


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up(path: str | None = None) -> None:
    """`ip link set lo up` in the namespace bound on `path` (None: the calling thread's), with two
    ioctls on a socket of that namespace: what `--network none` needs."""
    with (socket_in(path, socket.AF_INET, socket.SOCK_DGRAM) if path is not None
          else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
