"""run: create + start; in the foreground, wait for the container and delete it afterwards."""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import os

from cais.runtime import store
from cais.runtime.errors import suppress
from cais.runtime.verbs.create import create
from cais.runtime.verbs.delete import delete
from cais.runtime.verbs.start import start

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
             _signal.SIGWINCH)


def wait_forwarding(pid: int) -> int:
    """Wait for our child PID, forwarding the usual signals to it; return a shell-style status."""
    def forward(sig: int, _frame: object) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)

    previous = {sig: _signal.signal(sig, forward) for sig in FORWARDED}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run(container_id: str, bundle: str, *, root: str = store.DEFAULT_ROOT, detach: bool = False,
        **create_options: object) -> int:
    """create + start; unless detached, wait (proxying the terminal if we must) and delete."""
    listener = None
    if not detach and not create_options.get("console_socket"):
        from cais.runtime import spec

        if (spec.load(bundle).get("process") or {}).get("terminal"):
            from cais.runtime.terminal import ConsoleListener

            listener = ConsoleListener()
            create_options["console_socket"] = listener.path
    try:
        create(container_id, bundle, root=root, **create_options)  # type: ignore[arg-type]
        master = listener.master() if listener else -1
    finally:
        if listener:
            listener.close()
    try:
        start(container_id, root=root)
    except BaseException:
        delete(container_id, root=root, force=True)
        raise
    if detach:
        return 0
    pid = store.load(root, container_id).pid
    try:
        if master >= 0:
            from cais.runtime.terminal import proxy

            return proxy(master, pid)
        return wait_forwarding(pid)
    finally:
        delete(container_id, root=root, force=True)
