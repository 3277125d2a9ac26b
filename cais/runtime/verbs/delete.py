"""delete: remove a stopped (or, with force, any) container: processes, cgroup, state; poststop."""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import sys
import time

from cais.runtime import cgroup, store
from cais.runtime.errors import InvalidState, RuntimeFailure, suppress
from cais.runtime.verbs.kill import signal_init

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def _empty_and_destroy(manager: Any) -> None:
    """Kill what is left in the cgroup (processes of a container without its own pid namespace
    outlive its init), wait for it to empty, remove it."""
    deadline = time.monotonic() + 10
    while manager.pids():
        if time.monotonic() > deadline:
            raise RuntimeFailure("cgroup still holds processes after SIGKILL")
        manager.kill(_signal.SIGKILL)
        time.sleep(0.01)
    manager.destroy()


def delete(container_id: str, *, root: str = store.DEFAULT_ROOT, force: bool = False) -> None:
    container = store.load(root, container_id)
    status = container.status()
    if status in ("running", "paused") and not force:
        raise InvalidState(f"cannot delete container {container_id} that is not stopped: {status}")
    manager = cgroup.of(container)
    if status != "stopped":
        if manager is not None:
            if status == "paused":
                manager.thaw()
            manager.kill(_signal.SIGKILL)
        with suppress(InvalidState):
            signal_init(container, _signal.SIGKILL)
        deadline = time.monotonic() + 10
        while container.alive() and time.monotonic() < deadline:
            time.sleep(0.001)
    if manager is not None:
        _empty_and_destroy(manager)
    poststop = container.config.get("hooks", {}).get("poststop", [])
    if poststop:
        from cais.runtime import hooks
        from cais.runtime.errors import HookFailed

        try:
            hooks.run("poststop", poststop, dict(container.oci_state(), status="stopped"))
        except HookFailed as e:
            print(f"cais-runtime: warning: {e}", file=sys.stderr)
    container.remove()
