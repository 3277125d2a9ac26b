"""Starting a container init: a fresh interpreter from a protected view of itself, then clone().

The runtime never runs container code from a process whose /proc/self/exe is the host's Python
binary, writable: the init is exec'd from a view of the binary that cannot be written, so a
container that reaches /proc/PID/exe (or execs /proc/self/exe) gets that view, not the host file
(the CVE-2019-5736 class). The view is the binary opened through a private, read-only, detached
OverlayFS mount (runc 1.2's way: no copy, the page cache shared with every other use of the
binary) or, where that mount is impossible or costs more than a copy, a sealed memfd copy (runc
1.1's way). The bootstrap is started with posix_spawn (no Python code runs between
fork and exec, safe in a threaded caller) and its first act is to close every descriptor but
stdio, --preserve-fds and its end of the sync socket; the descriptors meant for the init (exec
fifo, console socket) come later with its job, over that socket (SCM_RIGHTS).

A Bootstrap is started first thing, so that the interpreter's start and imports overlap with the
runtime's own work (config, state, cgroups) until the job is ready.
"""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import fcntl
import os
import sys

import cais
from cais.runtime.channel import Channel
from cais.runtime.errors import RuntimeFailure, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_protected_python: int | None = None
_COPY_AT_MOST = 1 << 20  # bytes: a binary up to this size is copied into a sealed memfd
_SIGNALS = tuple(s for s in range(1, 32) if s not in (9, 19))  # back to default (not KILL, STOP)
_BOOT = ("import sys;sys.path.insert(0,sys.argv[1]);"
         "from cais.runtime import bootstrap;getattr(bootstrap,sys.argv[2])(*map(int,sys.argv[3:]))")


def protected_python() -> int:
    """A descriptor of the interpreter's binary through which nothing can write (made once per
    process): see the module's docstring."""
    global _protected_python
    if _protected_python is None:
        binary = os.path.realpath(sys.executable)
        # A launcher next to a shared libpython is a few kB: a copy costs less than loading
        # ctypes for the mount (~4 ms of the command's start). A static interpreter is ~7 MB,
        # whose copy costs ~5-15 ms and every page fault of its exec.
        big = os.stat(binary).st_size > _COPY_AT_MOST
        _protected_python = (big and _through_overlay(binary)) or _sealed_copy(binary)
    return _protected_python


def _through_overlay(binary: str) -> int | None:
    """BINARY opened (O_PATH) through an OverlayFS mount of its directory that is attached nowhere
    (no process can reach it to remount it), read-only, without an upper layer (a write to the
    file is EROFS: there is nothing to copy it up to). None where the kernel refuses."""
    from cais.linux import fsmount

    directory, name = os.path.split(binary)
    # Without an upper layer OverlayFS wants two lower ones: the second, below, only has to exist
    # and not overlap the first: cais's own package directory. Its entries never matter.
    under = os.path.dirname(os.path.abspath(cais.__file__))
    if any(c in path for path in (directory, under) for c in ":,\\"):
        return None  # a path the lowerdir option cannot carry as it is
    try:
        ctx = fsmount.fsopen("overlay")
    except OSError:
        return None
    try:
        fsmount.fsconfig_string(ctx, "lowerdir", f"{directory}:{under}")
        fsmount.fsconfig_create(ctx)
        mnt = fsmount.fsmount(ctx, fsmount.FSMOUNT_CLOEXEC, fsmount.MOUNT_ATTR_RDONLY | fsmount.MOUNT_ATTR_NOSUID
                              | fsmount.MOUNT_ATTR_NODEV)
    except OSError:  # no OverlayFS, too deep a stack of them, an unprivileged caller...
        return None
    finally:
        os.close(ctx)
    try:
        return os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=mnt)
    except OSError:
        return None
    finally:
        os.close(mnt)  # the mount lives on as long as the file is open (or executed)


def _sealed_copy(binary: str) -> int:
    """A read-only, sealed memfd holding a copy of BINARY."""
    fd = os.memfd_create("cais-runtime-python", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    with open(binary, "rb") as f:
        data = f.read()
    while data:
        data = data[os.write(fd, data):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


def _spawn(entry: str, exe_fd: int, actions: list[tuple[int, ...]], *args: int) -> int:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cais.__file__)))
    argv = [os.path.realpath(sys.executable), "-I", "-S", "-c", _BOOT, package_parent, entry, *map(str, args)]
    try:
        return os.posix_spawn(f"/proc/self/fd/{exe_fd}", argv, {}, file_actions=actions, setsigdef=_SIGNALS,
                              setsigmask=())
    except OSError as e:
        raise RuntimeFailure(f"cannot start the container init: {e.strerror}") from None


def _started(boot: Bootstrap | _ZygoteBootstrap, message: dict[str, Any] | None) -> int:
    if message is None:
        raise RuntimeFailure("container init exited before reporting its pid")
    if "error" in message:
        raise RuntimeFailure(message["error"])
    boot.in_cgroup = bool(message.get("in_cgroup"))
    return int(message["pid"])


class Bootstrap:
    """A started bootstrap process, waiting for its job; `channel` then talks to the init."""

    in_cgroup = False  # after start(): the init was cloned into the job's cgroup

    def __init__(self, stdio: tuple[int, int, int] | None = None, preserve_fds: int = 0) -> None:
        for fd in range(3, 3 + preserve_fds):
            try:
                os.fstat(fd)
            except OSError:
                raise RuntimeFailure(f"--preserve-fds {preserve_fds}: descriptor {fd} is not open") from None
        self.preserve_fds = preserve_fds
        floor = 3 + preserve_fds  # a caller with closed stdio: keep clear of 0-2 and the preserved
        exe_fd = fcntl.fcntl(protected_python(), fcntl.F_DUPFD_CLOEXEC, floor)
        self.channel, child = Channel.pair()
        if child.fd < floor:
            moved = fcntl.fcntl(child.fd, fcntl.F_DUPFD_CLOEXEC, floor)
            child.close()
            child = Channel(moved)
        keep = [exe_fd, child.fd, *range(3, 3 + preserve_fds)]
        # dup2(fd, fd) in a spawn's file actions clears close-on-exec: exactly these fds are inherited.
        actions = [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in keep]
        if stdio is not None:
            actions += [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        try:
            self.pid = _spawn("bootstrap", exe_fd, actions, child.fd, exe_fd, preserve_fds)
        except BaseException:
            self.channel.close()
            raise
        finally:
            child.close()
            os.close(exe_fd)

    def start(self, job: dict[str, Any], fds: list[int]) -> int:
        """Send the job (and FDS, which job refers to by index); return the init's pid. A job's
        cgroup_fd (a cgroup v2 directory) is where the init is born: then `in_cgroup` is True."""
        try:
            self.channel.send(dict(job, sys_path=sys.path), fds)
            message = self.channel.recv()
        finally:
            self._reap()
        return _started(self, message)

    def abandon(self) -> None:
        """Stop a bootstrap whose job will never come (the caller failed first)."""
        if self.pid:
            with suppress(ProcessLookupError):
                os.kill(self.pid, _signal.SIGKILL)
            self._reap()
        self.channel.close()

    def _reap(self) -> None:
        if self.pid:
            with suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


class Zygote:
    """A bootstrap kept warm, for a long-running caller such as the engine (opt-in).

    Each container's init is then cloned from an interpreter that has already started and imported
    the init's code: create() and exec_process() skip an interpreter start. The zygote is the
    caller's child and clones with CLONE_PARENT, so inits stay the caller's children. A job that
    joins namespaces by path (every exec) gets a helper, cloned from the zygote, that joins them
    and clones the process as a fresh Bootstrap would (bootstrap.zygote). close() stops it.

        zygote = Zygote()
        runtime.create(id, bundle, bootstrap=zygote.bootstrap(stdio))
        runtime.exec_process(id, process, bootstrap=zygote.bootstrap(stdio))
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        exe_fd = fcntl.fcntl(protected_python(), fcntl.F_DUPFD_CLOEXEC, 3)
        self._control, child = Channel.pair()
        try:
            self.pid = _spawn("zygote", exe_fd, [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in (exe_fd, child.fd)],
                              child.fd, exe_fd)
        finally:
            child.close()
            os.close(exe_fd)

    def bootstrap(self, stdio: tuple[int, int, int] | None = None, preserve_fds: int = 0) -> _ZygoteBootstrap:
        return _ZygoteBootstrap(self, stdio, preserve_fds)

    def _request(self, job: dict[str, Any], fds: list[int], channel: Channel) -> dict[str, Any] | None:
        with self._lock:  # one request in flight: its descriptors never mix with the next one's
            try:
                self._control.send(job, fds)
            except OSError as e:
                raise RuntimeFailure(f"the init zygote is gone: {e.strerror}") from None
            return channel.recv()

    def stats(self) -> dict[str, int]:
        """Seccomp programs the zygote compiled so far, and requests it served again from its cache."""
        message = self._stats()
        return {k: message[k] for k in ("seccomp_compiled", "seccomp_reused")}

    def spare(self) -> int:
        """The pid of the spare init the zygote holds (bootstrap._Spare), 0 if none now."""
        return self._stats()["spare"]

    def _stats(self) -> dict[str, int]:
        channel, child = Channel.pair()
        try:
            message = self._request({"kind": "stats"}, [child.fd], channel)
        finally:
            child.close()
            channel.close()
        if message is None:
            raise RuntimeFailure("the init zygote is gone")
        return message

    def close(self) -> None:
        """Stop the zygote and its spare init (bootstrap._Spare), both children of the caller."""
        spare = 0
        if self.pid:
            channel, child = Channel.pair()
            try:
                spare = (self._request({"kind": "close"}, [child.fd], channel) or {}).get("spare", 0)
            except (OSError, RuntimeFailure):
                pass  # gone already: so is its spare, which someone else reaps
            finally:
                child.close()
                channel.close()
        self._control.close()
        for pid in (self.pid, spare):
            if pid:
                with suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        self.pid = 0


class _ZygoteBootstrap:
    """Bootstrap's interface over a Zygote."""

    in_cgroup = False

    def __init__(self, zygote: Zygote, stdio: tuple[int, int, int] | None, preserve_fds: int) -> None:
        self._zygote = zygote
        self._stdio = stdio or (0, 1, 2)
        self._preserve_fds = preserve_fds
        self.channel, self._child = Channel.pair()

    def start(self, job: dict[str, Any], fds: list[int]) -> int:
        passed = [self._child.fd, *self._stdio, *range(3, 3 + self._preserve_fds), *fds]
        try:
            message = self._zygote._request(dict(job, sys_path=sys.path), passed, self.channel)
        finally:
            self._child.close()
        if message is not None and message.get("by"):  # the helper that joined the namespaces
            with suppress(ChildProcessError):
                os.waitpid(message["by"], 0)
        return _started(self, message)

    def abandon(self) -> None:
        self._child.close()
        self.channel.close()
