"""exec: start another process in a running container's namespaces, cgroup and security setup."""

from __future__ import annotations

import os

from cais.runtime import cgroup, launch, namespaces, spec, store
from cais.runtime.errors import ConfigError, InvalidState, RuntimeFailure
from cais.runtime.verbs.create import _stderr_warning, kill_and_reap, write_pid_file

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

    from cais.runtime.verbs.create import Warn


def exec_process(container_id: str, process: dict[str, Any], *, root: str = store.DEFAULT_ROOT,
                 console_socket: str | None = None, pid_file: str | None = None, detach: bool = True,
                 stdio: tuple[int, int, int] | None = None, preserve_fds: int = 0,
                 warn: Warn = _stderr_warning, bootstrap: launch.Bootstrap | None = None) -> int:
    """Start PROCESS (an OCI process object) in the container; return its pid.

    The process is a child of the caller (CLONE_PARENT): wait for it with os.waitpid. `detach`
    is the CLI's business (whether to wait); in-process callers always get the pid back.
    """
    boot = bootstrap or launch.Bootstrap(stdio, preserve_fds)
    try:
        return _exec(boot, container_id, process, root, console_socket, pid_file, preserve_fds, warn)
    finally:
        boot.abandon()


def _exec(boot: launch.Bootstrap, container_id: str, process: dict[str, Any], root: str,
          console_socket: str | None, pid_file: str | None, preserve_fds: int, warn: Warn) -> int:
    container = store.load(root, container_id)
    status = container.status()
    if status not in ("running", "created"):
        raise InvalidState(f"cannot exec in a {status} container")
    try:
        spec.validate_process(process)
    except ConfigError as e:
        raise ConfigError(str(e).replace("config.json", "process")) from None
    if process.get("terminal") and not console_socket:
        raise ConfigError("process.terminal is true: --console-socket is required")
    config = container.config
    joins = namespaces.of_process(config, container.pid)
    console_fd = None
    pid = 0
    cgroup_fd = -1
    try:
        if console_socket:
            from cais.runtime import terminal  # socket.py, enum...: only for a terminal

            console_fd = terminal.connect(console_socket)
        manager = cgroup.of(container)
        # v2: cloned into it, no migration; unless the process joins the container's cgroup
        # namespace first (the kernel refuses a cgroup outside the caller's view: it is moved).
        if manager is not None and manager.version == 2:
            cgroup_fd = os.open(manager.paths[""], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        job = {"kind": "exec", "id": container_id, "config": config, "process": process, "clone_flags": 0,
               "joins": joins, "seccomp": bool(config.get("linux", {}).get("seccomp")),
               "preserve_fds": preserve_fds, "console_fd": None, "cgroup_fd": None}
        fds: list[int] = []
        for key, fd in (("console_fd", console_fd), ("cgroup_fd", cgroup_fd)):
            if fd is not None and fd >= 0:
                job[key] = len(fds)
                fds.append(fd)
        pid = boot.start(job, fds)
        if manager is not None and not boot.in_cgroup:
            manager.add(pid)
        boot.channel.send({"type": "go", "pid": pid})
        while (message := boot.channel.recv()) is not None:  # EOF: the process exec'd (O_CLOEXEC)
            if "error" in message:
                raise RuntimeFailure(message["error"])
            if message.get("type") == "warning":
                warn(message["msg"])
        if pid_file:
            write_pid_file(pid_file, pid)
    except BaseException:
        if pid:
            kill_and_reap(pid)
        raise
    finally:
        if console_fd is not None:
            os.close(console_fd)
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
    return pid
