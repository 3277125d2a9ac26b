"""kill: send a signal to a container's init (or, with all=True, to every process in it)."""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import os

from cais.runtime import cgroup, store
from cais.runtime.errors import InvalidState


def signal_init(container: store.Container, sig: int) -> None:
    """Signal through a pidfd, checked against the recorded start time: never a recycled pid."""
    try:
        fd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        raise InvalidState("container not running") from None
    try:
        if not container.alive():
            raise InvalidState("container not running")
        _signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:  # it exited (and was reaped) since the check
        raise InvalidState("container not running") from None
    finally:
        os.close(fd)


def kill(container_id: str, sig: int, *, root: str = store.DEFAULT_ROOT, all: bool = False) -> None:
    container = store.load(root, container_id)
    if container.status() == "stopped":
        raise InvalidState("container not running")
    if all:
        manager = cgroup.of(container)
        if manager is not None:
            manager.kill(sig)
            return
    signal_init(container, sig)
