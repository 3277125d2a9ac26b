"""The first code of a container's init, in a fresh interpreter exec'd from a sealed memfd.

It makes itself non-dumpable before anything else and closes every descriptor it was not meant
to have. While the runtime prepares the job, it imports the init's code (the init inherits it);
then it joins the namespaces given by path, clone()s the init into the new namespaces with
CLONE_PARENT (so the init is a child of the runtime's caller, who can waitpid() it), reports the
pid and exits.
"""

from __future__ import annotations

import os
import sys

from cais.linux import prctl


def bootstrap(channel_fd: int, memfd: int, preserve_fds: int) -> None:
    prctl.set_dumpable(False)
    from cais.linux.fds import close_all_except

    os.close(memfd)
    close_all_except({channel_fd, *range(3, 3 + preserve_fds)})  # anything else came by mistake
    from cais.linux.namespaces import CLONE_PARENT, clone
    from cais.runtime import init, namespaces
    from cais.runtime.channel import Channel

    ch = Channel(channel_fd)
    received = ch.recv_with_fds()
    if received is None:
        os._exit(1)
    job, fds = received
    try:
        for key in ("fifo_fd", "console_fd"):
            if job.get(key) is not None:
                job[key] = fds[job[key]]
        sys.path[:] = job["sys_path"]
        _preload(job)
        namespaces.join([tuple(j) for j in job["joins"]])
        pid = clone(job["clone_flags"] | CLONE_PARENT)
    except Exception as e:  # noqa: BLE001 - reported to the runtime as one line
        ch.send({"error": str(e)})
        os._exit(1)
    if pid == 0:
        init.run(ch, job)
    ch.send({"type": "pid", "pid": pid})
    os._exit(0)


def _preload(job: dict) -> None:
    """What the init may need that lives on the host: load it before namespaces hide the host."""
    if job["seccomp"]:
        import pyseccomp  # noqa: F401
    proc = job["process"] if job["kind"] == "exec" else job["config"]["process"]
    if proc.get("terminal"):
        from cais.runtime import terminal  # noqa: F401
    hooks = job["config"].get("hooks", {})
    if job["kind"] == "create" and (hooks.get("createContainer") or hooks.get("startContainer")):
        from cais.runtime import hooks as _  # noqa: F401
