"""start: release a created container's init from the exec fifo; run the poststart hooks."""

from __future__ import annotations

import os
import select
import sys

from cais.runtime import store
from cais.runtime.errors import InvalidState, RuntimeFailure, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def start(container_id: str, *, root: str = store.DEFAULT_ROOT) -> None:
    container, fd = release(container_id, root=root)
    try:
        wait_released(container, fd)
    finally:
        os.close(fd)
    released(container)


def wait_released(container: store.Container, fd: int) -> None:
    """Until the init's byte comes on `fd` (from `release`)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if poller.poll(100):
            data = os.read(fd, 1)
            if data == b"0":
                return
        if not container.alive():
            raise RuntimeFailure("container init exited before start")


def release(container_id: str, *, root: str = store.DEFAULT_ROOT) -> tuple[store.Container, int]:
    """The container's init released: the read end of its exec fifo is open (the init, blocked in
    opening the write end, goes on), returned with the container. The init then writes one byte
    and execs its process: the caller keeps the descriptor open until that byte is read (the init
    would die of SIGPIPE otherwise), closes it and calls `released`. `start` does all of it."""
    container = store.load(root, container_id)
    status = container.status()
    if status != "created":
        raise InvalidState(f"cannot start a container that is {status}")
    try:
        fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidState("container was started already") from None
    return container, fd


def has_poststart(container: store.Container) -> bool:
    return bool(container.config.get("hooks", {}).get("poststart"))


def released(container: store.Container) -> None:
    """After the init's byte: the fifo removed (the container is `running`), the poststart hooks run."""
    with suppress(FileNotFoundError):  # by a concurrent start, or a delete after the init's exit
        os.unlink(container.fifo)
    poststart: list[dict[str, Any]] = container.config.get("hooks", {}).get("poststart", [])
    if poststart:
        from cais.runtime import hooks
        from cais.runtime.errors import HookFailed

        try:
            hooks.run("poststart", poststart, container.oci_state())
        except HookFailed as e:
            print(f"cais-runtime: warning: {e}", file=sys.stderr)
