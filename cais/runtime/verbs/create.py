"""create: set a container up and leave its init blocked on the exec fifo until `start`."""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import os
import sys
import time

from cais.linux.namespaces import CLONE_NEWCGROUP, CLONE_NEWUSER, CLONE_NEWUTS
from cais.runtime import cgroup, launch, namespaces, spec, store
from cais.runtime.channel import Channel
from cais.runtime.errors import ConfigError, RuntimeFailure, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Warn = Callable[[str], None]


def _nothing() -> None:
    pass


def _stderr_warning(message: str) -> None:
    print(f"cais-runtime: warning: {message}", file=sys.stderr)


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.cais-tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def kill_and_reap(pid: int) -> None:
    """Undo a half-started process (create or exec failed after it was born)."""
    with suppress(OSError):
        os.kill(pid, _signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def create(container_id: str, bundle: str, *, root: str = store.DEFAULT_ROOT, console_socket: str | None = None,
           pid_file: str | None = None, preserve_fds: int = 0, no_pivot: bool = False,
           stdio: tuple[int, int, int] | None = None, no_new_keyring: bool = False,
           systemd_cgroup: bool = False, warn: Warn = _stderr_warning,
           bootstrap: launch.Bootstrap | None = None) -> int:
    """Create the container; its init (whose pid is returned) waits for `start`. `bootstrap`: one
    started earlier by the caller (the command line starts it before its own imports), else one
    is started here."""
    boot = bootstrap or launch.Bootstrap(stdio, preserve_fds)  # first: it boots while we prepare
    try:
        return _create(boot, container_id, os.path.abspath(bundle), root, console_socket, pid_file, preserve_fds,
                no_pivot, no_new_keyring, systemd_cgroup, warn)
    finally:
        boot.abandon()


def _create(boot: launch.Bootstrap, container_id: str, bundle: str, root: str, console_socket: str | None,
            pid_file: str | None, preserve_fds: int, no_pivot: bool, no_new_keyring: bool, systemd_cgroup: bool,
            warn: Warn) -> int:
    config = spec.load(bundle)
    proc = config.get("process")
    if proc is None:
        raise ConfigError("config.json: process is required to create a container")
    clone_flags, joins = namespaces.plan(config)
    if proc.get("terminal") and not console_socket:
        raise ConfigError("process.terminal is true: --console-socket is required")
    if console_socket and not proc.get("terminal"):
        raise ConfigError("--console-socket given but process.terminal is false")
    store.check_id(container_id)
    now = time.time_ns()
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}Z"
    container = store.new(root, container_id, {"pid": 0, "pid_start": None, "bundle": bundle,
                                               "created": created, "config": config,
                                               "systemd_cgroup": systemd_cgroup})
    console_fd = None
    manager = None
    born_inside = False
    pid = 0
    fifo_fd = cgroup_fd = -1
    warmed = _nothing
    try:
        if console_socket:
            from cais.runtime import terminal

            console_fd = terminal.connect(console_socket)
        os.mkfifo(container.fifo, 0o600)
        os.chmod(container.fifo, 0o622)  # any container user may write it (mkfifo obeys the umask)
        # Opened here and passed: the init may not be able to walk --root (user namespaces).
        fifo_fd = os.open(container.fifo, os.O_PATH | os.O_CLOEXEC)
        manager = cgroup.manager(config, container_id, systemd_cgroup)
        resources = cgroup.resources(config)
        if manager is not None:
            manager.create(resources)
            container.data["cgroup_paths"] = manager.paths  # later commands reopen exactly these
            if manager.version == 1 and not isinstance(boot, launch.Bootstrap):
                # after the mkdirs, which the wait would hold up: it overlaps the clone instead
                warmed = manager.warm_migration()  # the init's migration, below, then costs ~0.1 ms
            if manager.version == 2:  # the init is cloned into it (CLONE_INTO_CGROUP): no migration
                cgroup_fd = os.open(manager.paths[""], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            elif isinstance(boot, launch.Bootstrap):
                # v1: the bootstrap goes in while it still boots (as runc puts `runc init` in), and
                # the init is cloned inside: the migration (an RCU grace period, ~10-20 ms) overlaps
                # the boot rather than following the clone. A zygote is shared: its inits are moved.
                manager.add(boot.pid)
                born_inside = True
        elif _limits(resources):
            warn("no cgroups backend in this build: linux.resources ignored")
        base_state = {"ociVersion": config["ociVersion"], "id": container_id, "status": "creating",
                      "bundle": bundle, "annotations": config.get("annotations", {})}
        job: dict[str, Any] = {
            "kind": "create", "id": container_id, "config": config, "bundle": bundle,
            # the cgroup namespace is made by the init once it is in its cgroup: that is its root
            "clone_flags": clone_flags & ~CLONE_NEWCGROUP, "joins": joins,
            "seccomp": bool(config.get("linux", {}).get("seccomp")),
            # root of its user namespace, made or joined by path (as runc's nsexec, for both)
            "new_userns": bool(clone_flags & CLONE_NEWUSER) or any(kind == "user" for kind, _ in joins),
            "new_uts": bool(clone_flags & CLONE_NEWUTS) or any(k == "uts" for k, _ in joins),
            "new_cgroupns": bool(clone_flags & CLONE_NEWCGROUP),
            "runtime_hooks": any(config.get("hooks", {}).get(k) for k in ("prestart", "createRuntime")),
            "no_pivot": no_pivot, "no_new_keyring": no_new_keyring, "preserve_fds": preserve_fds,
            "fifo_fd": 0, "console_fd": None, "cgroup_fd": None, "state": base_state,
        }  # fifo_fd, console_fd, cgroup_fd: indexes in the descriptors sent with the job
        fds = [fifo_fd]
        for key, fd in (("console_fd", console_fd), ("cgroup_fd", cgroup_fd)):
            if fd is not None and fd >= 0:
                job[key] = len(fds)
                fds.append(fd)
        pid = boot.start(job, fds)
        if clone_flags & CLONE_NEWUSER:
            namespaces.write_id_maps(pid, config.get("linux", {}))
        if manager is not None and not born_inside and not boot.in_cgroup:
            warmed()
            manager.add(pid)
        boot.channel.send({"type": "go", "pid": pid})
        container.data.update(pid=pid, pid_start=store.process_start_time(pid))
        container.save()  # while the init mounts (on failure below, the init is killed)
        _converse(boot.channel, config, dict(base_state, pid=pid), warn)
        if pid_file:
            write_pid_file(pid_file, pid)
        return pid
    except BaseException:
        warmed()
        if pid:
            kill_and_reap(pid)
        if born_inside:
            boot.abandon()  # out of the cgroup before it goes
        if manager is not None:
            with suppress(Exception):
                manager.destroy()
        container.remove()
        raise
    finally:
        for fd in (fifo_fd, cgroup_fd):
            if fd >= 0:
                os.close(fd)
        if console_fd is not None:
            os.close(console_fd)


def _limits(resources: dict[str, Any]) -> bool:
    return any(v for k, v in resources.items() if k != "devices")


def _converse(ch: Channel, config: dict[str, Any], state: dict[str, Any], warn: Warn) -> None:
    """Serve the init until it reports `created`: warnings, and the runtime-namespace hooks."""
    while True:
        message = ch.recv()
        if message is None:
            raise RuntimeFailure("container init exited during setup")
        if "error" in message:
            raise RuntimeFailure(message["error"])
        kind = message.get("type")
        if kind == "warning":
            warn(message["msg"])
        elif kind == "hooks":
            all_hooks = config.get("hooks", {})
            if all_hooks.get("prestart") or all_hooks.get("createRuntime"):
                from cais.runtime import hooks  # subprocess, threading...: only when there are hooks

                hooks.run("prestart", all_hooks.get("prestart", []), state)
                hooks.run("createRuntime", all_hooks.get("createRuntime", []), state)
            ch.send({"type": "hooks-done"})
        elif kind == "created":
            return
