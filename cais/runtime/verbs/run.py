"""run: create + start; in the foreground, wait for the container and delete it afterwards."""

from __future__ import annotations

import contextlib
import os
import signal

from cais.runtime import store
from cais.runtime.verbs.create import create
from cais.runtime.verbs.delete import delete
from cais.runtime.verbs.start import start

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH)


def wait_forwarding(pid: int) -> int:
    """Wait for our child PID, forwarding the usual signals to it; return a shell-style status."""
    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
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
