"""The first code of a container's init, in a fresh interpreter exec'd from a protected view of
the runtime's own binary (launch.py).

It makes itself non-dumpable before anything else and closes every descriptor it was not meant
to have. While the runtime prepares the job, it imports the init's code (the init inherits it);
then it joins the namespaces given by path, clone()s the init into the new namespaces with
CLONE_PARENT (so the init is a child of the runtime's caller, who can waitpid() it) and, on
cgroup v2, straight into its cgroup (CLONE_INTO_CGROUP), reports the pid and exits.
"""

from __future__ import annotations

import os
import sys

from cais.linux import prctl
from cais.linux.namespaces import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import NoReturn

    from cais.runtime.channel import Channel
    from cais.runtime.seccomp import Programs


def bootstrap(channel_fd: int, exe_fd: int, preserve_fds: int) -> None:
    prctl.set_dumpable(False)
    from cais.linux.fds import close_all_except

    os.close(exe_fd)  # the protected interpreter it was exec'd from
    close_all_except({channel_fd, *range(3, 3 + preserve_fds)})  # anything else came by mistake
    from cais.runtime import init  # noqa: F401 - imported now, while the runtime prepares the job
    from cais.runtime.channel import Channel

    ch = Channel(channel_fd)
    received = ch.recv_with_fds()
    if received is None:
        os._exit(1)
    job, fds = received
    try:
        for key in ("fifo_fd", "console_fd", "cgroup_fd"):
            if job.get(key) is not None:
                job[key] = fds[job[key]]
        sys.path[:] = job["sys_path"]
        _preload(job)
    except Exception as e:  # noqa: BLE001 - reported to the runtime as one line
        ch.send({"error": str(e)})
        os._exit(1)
    _join_and_clone(ch, job)


def _join_and_clone(ch: Channel, job: dict) -> NoReturn:
    """Join the job's namespaces, clone the init (it never returns) and report its pid, then exit.

    Runs in a fresh bootstrap, or in a zygote's helper (a job that joins namespaces: setns would
    change the zygote itself). `by` is this process, for a caller that reaps it."""
    from cais.runtime import init, namespaces

    try:
        namespaces.join([tuple(j) for j in job["joins"]])
        pid, in_cgroup = _clone(job)
    except Exception as e:  # noqa: BLE001 - reported to the runtime as one line
        ch.send({"error": str(e), "by": os.getpid()})
        os._exit(1)
    if pid == 0:
        if job.get("cgroup_fd") is not None:
            os.close(job["cgroup_fd"])  # a host directory: never the container's
        init.run(ch, job)
    ch.send({"type": "pid", "pid": pid, "in_cgroup": in_cgroup, "by": os.getpid()})
    os._exit(0)


def _clone(job: dict) -> tuple[int, bool]:
    """Clone the init (CLONE_PARENT: the caller's child); with a cgroup v2 directory in the job,
    into it (True), else the runtime moves it (False)."""
    from cais.linux.namespaces import CLONE_PARENT, clone, clone3

    flags = job["clone_flags"] | CLONE_PARENT
    cgroup = job.get("cgroup_fd")
    if cgroup is None:
        return clone(flags), False
    try:
        return clone3(flags, cgroup), True
    except OSError:  # before Linux 5.7, or a cgroup the kernel will not clone into: moved afterwards
        return clone(flags), False


def _preload(job: dict, programs: Programs | None = None) -> None:
    """What the init may need that lives on the host: load it before namespaces hide the host.
    Its seccomp program is compiled here (or taken from the zygote's PROGRAMS), once for the
    init, the exec helper and the process (init.py loads the bytes)."""
    if job["seccomp"]:
        section = job["config"]["linux"]["seccomp"]
        if programs is None:
            from cais.runtime.seccomp import compile_program

            job["seccomp_program"] = compile_program(section)
        else:
            job["seccomp_program"] = programs.get(section)
    proc = job["process"] if job["kind"] == "exec" else job["config"]["process"]
    if proc.get("terminal"):
        from cais.runtime import terminal  # noqa: F401
    hooks = job["config"].get("hooks", {})
    if job["kind"] == "create" and (hooks.get("createContainer") or hooks.get("startContainer")):
        from cais.runtime import hooks as _  # noqa: F401


def zygote(control_fd: int, exe_fd: int) -> None:
    """A bootstrap kept warm for a long-running caller (see launch.Zygote): one init per request.

    Each request is a job plus descriptors [sync socket, stdin, stdout, stderr, preserved...,
    extra...]; the init is cloned straight from here with CLONE_PARENT, so it is the caller's child.
    A job that joins namespaces (every exec) gets a helper instead, cloned the same way, which
    joins them and clones the init as a fresh bootstrap would: setns would change the zygote
    itself, and the pid namespace applies to children only. The caller reaps the helper (`by`).

    After a create, once no request came for a while, the zygote clones a spare init (_Spare)
    with the same namespaces: the next create of that kind is handed to it and skips the clone
    (~1-2 ms: the copy of the interpreter's page tables, and a network namespace). Not at once:
    the container just created needs the CPU more (the clone would compete with its setup).
    """
    prctl.set_dumpable(False)
    from cais.linux.fds import close_all_except

    os.close(exe_fd)  # the protected interpreter it was exec'd from
    close_all_except({control_fd})
    import gc

    from cais.linux.namespaces import CLONE_PARENT, clone
    from cais.runtime import init
    from cais.runtime.channel import Channel
    from cais.runtime.errors import suppress
    from cais.runtime.seccomp import Programs

    with suppress(ImportError, OSError):  # libseccomp, loaded once rather than by the first container
        import pyseccomp  # noqa: F401
    programs = Programs()
    control = Channel(control_fd)
    spare: _Spare | None = None
    spare_flags: int | None = None  # those of the last create a spare suits
    gc.freeze()  # what is imported now is never collected: no collection here writes to the pages inits share
    while True:
        if spare is None and spare_flags is not None and not _job_within(control_fd, _SPARE_AFTER_IDLE_MS):
            with suppress(OSError):
                spare = _Spare(spare_flags)
            spare_flags = None
        received = control.recv_with_fds(maxfds=250)
        if received is None:
            break
        job, fds = received
        ch = Channel(fds[0])
        if job["kind"] in ("stats", "close"):
            reply = {"seccomp_compiled": programs.compiled, "seccomp_reused": programs.reused,
                     "spare": spare.pid if spare is not None else 0}
            if job["kind"] == "close" and spare is not None:
                spare.close()  # it exits: the caller, its parent, reaps it
                spare = None
            ch.send(reply)
            for fd in fds:
                os.close(fd)
            continue
        in_cgroup = False
        try:
            sys.path[:] = job["sys_path"]
            _preload(job, programs)
            if job["joins"]:
                if clone(CLONE_PARENT) == 0:
                    try:
                        _join_and_clone(Channel(_arrange(job, fds, "cgroup_fd")), job)
                    finally:
                        os._exit(1)  # never back into the zygote's loop
                pid = -1  # the helper reports
            else:
                if job.get("cgroup_fd") is not None:  # an index among the extra descriptors
                    job["cgroup_fd"] = fds[4 + job["preserve_fds"] + job["cgroup_fd"]]
                pid = spare.take(job, fds) if spare is not None and spare.fits(job) else 0
                if pid <= 0:
                    pid, in_cgroup = _clone(job)
                if pid == 0:
                    gc.disable()  # the init execs soon: a collection would only copy pages
        except Exception as e:  # noqa: BLE001 - reported to the runtime as one line
            ch.send({"error": str(e)})
            pid = -1
        if pid == 0:
            try:
                init.run(Channel(_arrange(job, fds)), job)
            finally:
                os._exit(1)  # never back into the zygote's loop
        if pid > 0:
            ch.send({"type": "pid", "pid": pid, "in_cgroup": in_cgroup})
        for fd in fds:
            os.close(fd)
        if spare is not None and spare.taken:
            spare = None
        if _Spare.suits(job):
            spare_flags = job["clone_flags"]
    if spare is not None:
        spare.close()


_SPARE_AFTER_IDLE_MS = 30  # a spare is cloned once the container just created has had the CPU (2 cores...)


def _job_within(fd: int, ms: int) -> bool:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(ms))


class _Spare:
    """An init cloned ahead of its job, waiting for it on a socket of its own.

    It is cloned with the job's namespaces but the mount namespace, which it unshares when its
    job comes: a copy of the mount table taken then, with the rootfs and volumes mounted since.
    Only plain creates get one: no user or time namespace, no namespace joined, no cgroup v2
    directory to be born in (a spare is moved into its cgroup, as on cgroup v1)."""

    NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET  # a job's, at most

    def __init__(self, clone_flags: int) -> None:
        from cais.linux.namespaces import CLONE_PARENT, clone
        from cais.runtime.channel import Channel

        self.flags = clone_flags
        self.taken = False
        self.channel, theirs = Channel.pair()
        try:
            self.pid = clone((clone_flags & ~CLONE_NEWNS) | CLONE_PARENT)
        except BaseException:
            self.channel.close()
            theirs.close()
            raise
        if self.pid == 0:
            try:
                self._wait(theirs, clone_flags & CLONE_NEWNS)
            finally:
                os._exit(1)  # never back into the zygote's loop
        theirs.close()

    @classmethod
    def suits(cls, job: dict) -> bool:
        return (job["kind"] == "create" and not job["joins"] and job.get("cgroup_fd") is None
                and not job["clone_flags"] & ~cls.NAMESPACES)

    def fits(self, job: dict) -> bool:
        return self.suits(job) and job["clone_flags"] == self.flags

    def take(self, job: dict, fds: list[int]) -> int:
        """Hand JOB and its descriptors over: the spare's pid, or 0 if it is gone."""
        self.taken = True
        try:
            self.channel.send(job, fds)
        except OSError:
            return 0
        finally:
            self.channel.close()
        return self.pid

    def close(self) -> None:
        self.channel.close()

    @staticmethod
    def _wait(channel: Channel, new_mount_ns: int) -> None:
        """In the spare: nothing of the zygote's kept; its job (or the zygote's end) awaited."""
        import gc

        from cais.linux.fds import close_all_except
        from cais.runtime import init
        from cais.runtime.channel import Channel

        gc.disable()
        close_all_except({channel.fd})
        received = channel.recv_with_fds(maxfds=250)
        if received is None:  # the zygote closed it, or exited
            os._exit(0)
        job, fds = received
        channel.close()
        sys.path[:] = job["sys_path"]  # what the init still imports (a terminal, hooks) is found as the job says
        ch = Channel(_arrange(job, fds))
        if new_mount_ns:
            from cais.linux.namespaces import unshare

            try:
                unshare(new_mount_ns)
            except OSError as e:
                ch.send({"error": f"container init, entering its namespaces: {e.strerror}"})
                os._exit(1)
        init.run(ch, job)


def _arrange(job: dict, fds: list[int], *also: str) -> int:
    """In a zygote's child: stdio and preserved fds to their numbers, the job's descriptors (fifo,
    console and ALSO) kept, the rest closed; the sync fd."""
    import fcntl

    from cais.linux.fds import close_all_except

    preserve = job["preserve_fds"]
    high = max(fds) + 3 + preserve + 1
    lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in fds]
    for target, fd in enumerate(lifted[1:4 + preserve]):
        os.dup2(fd, target)
    extra = lifted[4 + preserve:]
    keep = {*range(3, 3 + preserve), lifted[0]}
    for key in ("fifo_fd", "console_fd", *also):
        if job.get(key) is not None:
            job[key] = extra[job[key]]
            keep.add(job[key])
    close_all_except(keep)  # the control socket, and the cgroup directory's unless kept
    return lifted[0]
