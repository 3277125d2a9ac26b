"""The grace period of a cgroup v1 migration, paid before a container start needs it.

Moving a process into a v1 cgroup (writing cgroup.procs) takes the kernel's
cgroup_threadgroup_rwsem for writing. When no migration happened for a while, that first waits
an RCU grace period (rcu_sync_enter → synchronize_rcu: 6–20 ms on this VM) while holding
cgroup_mutex, so every cgroup mkdir, rmdir and migration on the host waits with it. For about a
grace period after the last writer, the next writers pass at once (~0.1 ms).

A container start on v1 makes its cgroups (mkdir) and moves its init in, ~10–30 ms after the
engine heard of it (`docker run` creates, then starts). `MigrationPrimer.prime()` makes a thread
write its own process into the cgroup it is already in — a migration that moves nothing but takes
the lock — at once and every few milliseconds until a deadline: the grace period is paid while
the engine prepares the container, and the start's own mkdirs and migration find the lock warm.

On cgroup v2 the init is cloned straight into its cgroup (CLONE_INTO_CGROUP): no migration, no
wait, so nothing is primed there. The kernel's own remedy is the `favordynmods` mount option
(CONFIG_CGROUP_FAVOR_DYNMODS), which keeps the lock warm for good at some cost to every fork on
the host: an administrator's choice, not an engine's.
"""

from __future__ import annotations

import os
import time

from cais.runtime.cgroups.paths import cgroup_mounts, own_cgroups, under_mount

TYPE_CHECKING = False  # the runtime's create imports this module: threading only for the primer
if TYPE_CHECKING:
    import threading

# How often the thread migrates while primed: well inside the grace period (≥ 4 ms at HZ=250)
# that keeps the lock warm after each migration.
INTERVAL = 0.003


def own_procs_v1() -> str | None:
    """cgroup.procs of the caller's own cgroup in the first mounted v1 hierarchy, if any."""
    own = own_cgroups()
    for mount in cgroup_mounts():
        if mount.fstype == "cgroup" and mount.subsystems and mount.subsystems[0] in own:
            return os.path.join(under_mount(mount, own[mount.subsystems[0]]), "cgroup.procs")
    return None


def migrate_self(procs: str) -> bool:
    """Write this process into `procs`, its own cgroup: nothing moves, the lock is taken."""
    try:
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, str(os.getpid()).encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class MigrationPrimer:
    """Keeps v1 migrations warm while container starts are under way (a no-op elsewhere).

        primer = MigrationPrimer()       # once, in a long-lived engine
        primer.prime(0.2)                # a container was created: its start usually follows
        with primer.held():              # a start: warm until it returns
            ...
    """

    def __init__(self, procs: str | None | bool = False) -> None:
        """`procs`: the cgroup.procs to write (tests), None for "no v1 hierarchy"; found lazily."""
        import threading

        self._procs = procs
        self._cond = threading.Condition()
        self._deadline = 0.0
        self._holders = 0
        self._thread: threading.Thread | None = None
        self.migrations = 0  # no-op migrations made so far

    def prime(self, seconds: float) -> None:
        """Warm from now until at least `seconds` from now."""
        with self._cond:
            self._deadline = max(self._deadline, time.monotonic() + seconds)
            self._wake()

    def held(self) -> _Held:
        return _Held(self)

    def _wake(self) -> None:
        """Under the condition: the thread started, or woken if it waits for work."""
        if self._procs is False:  # None on a v2-only host: see the module's docstring
            self._procs = own_procs_v1()
        if self._procs is None:
            return
        if self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._run, name="cais-cgroup-primer", daemon=True)
            self._thread.start()
        self._cond.notify()

    def _busy(self) -> bool:
        return self._holders > 0 or time.monotonic() < self._deadline

    def _run(self) -> None:
        procs = self._procs
        assert isinstance(procs, str)
        while True:
            with self._cond:
                while not self._busy():
                    self._cond.wait()
            if not migrate_self(procs):  # a read-only cgroupfs (caisd in a container): give up
                with self._cond:
                    self._procs = None
                    self._thread = None
                return
            self.migrations += 1
            time.sleep(INTERVAL)


class _Held:
    def __init__(self, primer: MigrationPrimer) -> None:
        self._primer = primer

    def __enter__(self) -> None:
        with self._primer._cond:
            self._primer._holders += 1
            self._primer._wake()

    def __exit__(self, *_: object) -> None:
        with self._primer._cond:
            self._primer._holders -= 1
