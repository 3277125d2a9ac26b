"""start: release a created container's init from the exec fifo; run the poststart hooks."""

from __future__ import annotations

import os
import select
import sys

from cais.runtime import store
from cais.runtime.errors import InvalidState, RuntimeFailure


def start(container_id: str, *, root: str = store.DEFAULT_ROOT) -> None:
    container = store.load(root, container_id)
    status = container.status()
    if status != "created":
        raise InvalidState(f"cannot start a container that is {status}")
    try:
        fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidState("container was started already") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                data = os.read(fd, 1)
                if data == b"0":
                    break
            if not container.alive():
                raise RuntimeFailure("container init exited before start")
    finally:
        os.close(fd)
    os.unlink(container.fifo)
    poststart = container.config.get("hooks", {}).get("poststart", [])
    if poststart:
        from cais.runtime import hooks
        from cais.runtime.errors import HookFailed

        try:
            hooks.run("poststart", poststart, container.oci_state())
        except HookFailed as e:
            print(f"cais-runtime: warning: {e}", file=sys.stderr)
