"""Starting a container init: a fresh interpreter from a sealed copy of itself, then clone().

The runtime never runs container code from a process whose /proc/self/exe is the host's Python
binary: the init is exec'd from a sealed memfd copy (as runc 1.1 does with its own binary), so a
container that reaches /proc/PID/exe (or execs /proc/self/exe) gets the memfd, not the host file
(the CVE-2019-5736 class). The bootstrap is started with posix_spawn (no Python code runs between
fork and exec, safe in a threaded caller) and its first act is to close every descriptor but
stdio, --preserve-fds and the ones passed on purpose.
"""

from __future__ import annotations

import fcntl
import os
import sys
from typing import Any

import cais
from cais.runtime.channel import Channel
from cais.runtime.errors import RuntimeFailure

_sealed_python: int | None = None
_SIGNALS = tuple(s for s in range(1, 32) if s not in (9, 19))  # back to default (not KILL, STOP)
_BOOT = ("import sys;sys.path.insert(0,sys.argv[2]);"
         "from cais.runtime.bootstrap import bootstrap;bootstrap(int(sys.argv[1]))")


def sealed_python() -> int:
    """A read-only, sealed memfd holding the interpreter's binary (made once per process)."""
    global _sealed_python
    if _sealed_python is None:
        fd = os.memfd_create("cais-runtime-python", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        with open(os.path.realpath(sys.executable), "rb") as f:
            data = f.read()
        while data:
            data = data[os.write(fd, data):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        _sealed_python = fd
    return _sealed_python


def spawn(job: dict[str, Any], child: Channel, parent: Channel, stdio: tuple[int, int, int] | None,
          pass_fds: list[int]) -> int:
    """Start the bootstrap process; return the pid of the container's init it cloned."""
    memfd = sealed_python()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cais.__file__)))
    job = dict(job, memfd=memfd, sys_path=sys.path)
    keep = [memfd, child.fd, *pass_fds]
    job["keep_fds"] = keep
    # dup2(fd, fd) in a spawn's file actions clears close-on-exec: exactly these fds are inherited.
    actions = [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in keep]
    if stdio is not None:
        actions += [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    argv = [os.path.realpath(sys.executable), "-I", "-S", "-c", _BOOT, str(child.fd), package_parent]
    try:
        pid = os.posix_spawn(f"/proc/self/fd/{memfd}", argv, {}, file_actions=actions, setsigdef=_SIGNALS,
                             setsigmask=())
    except OSError as e:
        raise RuntimeFailure(f"cannot start the container init: {e.strerror}") from None
    finally:
        child.close()
    try:
        parent.send(job)
        message = parent.recv()
    finally:
        os.waitpid(pid, 0)
    if message is None:
        raise RuntimeFailure("container init exited before reporting its pid")
    if "error" in message:
        raise RuntimeFailure(message["error"])
    return int(message["pid"])
