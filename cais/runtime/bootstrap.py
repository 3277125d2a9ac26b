"""The first code of a container's init, in a fresh interpreter exec'd from a sealed memfd.

It makes itself non-dumpable before anything else, joins the namespaces given by path, then
clone()s the init into the new namespaces with CLONE_PARENT (so the init is a child of the
runtime's caller, who can waitpid() it) and exits. It imports little: the init loads the rest
(init.py) while the runtime sets up cgroups and id maps in parallel — unless the init could no
longer read the host's files by then (a new user namespace, a joined mount namespace).
"""

from __future__ import annotations

import os
import sys

from cais.linux import prctl


def bootstrap(fd: int) -> None:
    prctl.set_dumpable(False)
    from cais.linux.namespaces import CLONE_NEWUSER, CLONE_PARENT, clone
    from cais.runtime.channel import Channel

    ch = Channel(fd)
    job = ch.recv()
    if job is None:
        os._exit(1)
    from cais.linux.fds import close_all_except

    close_all_except(set(job["keep_fds"]) - {job["memfd"]})  # anything else came from the caller by mistake
    sys.path[:] = job["sys_path"]
    early = job["clone_flags"] & CLONE_NEWUSER or any(k in ("mount", "user") for k, _ in job["joins"])
    try:
        if early:
            _load(job)
        from cais.runtime import namespaces

        namespaces.join([tuple(j) for j in job["joins"]])
        pid = clone(job["clone_flags"] | CLONE_PARENT)
    except Exception as e:  # noqa: BLE001 - reported to the runtime as one line
        ch.send({"error": str(e)})
        os._exit(1)
    if pid == 0:
        try:
            init = _load(job)
        except Exception as e:  # noqa: BLE001
            ch.send({"error": f"container init: {e}"})
            os._exit(1)
        init.run(ch, job)
    ch.send({"type": "pid", "pid": pid})
    os._exit(0)


def _load(job: dict) -> object:
    from cais.runtime import init

    if job["seccomp"]:
        import pyseccomp  # noqa: F401 - libseccomp must be loaded while the host's files are reachable
    if job["kind"] == "exec" and job["process"].get("terminal"):
        from cais.runtime import terminal  # noqa: F401 - after setns(mnt) the host's files are gone
    return init
