"""cgroups: one face, two backends (v1 and v2), chosen at run time.

    manager = cgroups.open_manager(cgroups_path, container_id, systemd=False)
    manager.create(resources)          # make the cgroup(s) and write the OCI linux.resources
    manager.add(pid)                   # move a process in
    manager.update(resources)          # change limits of a running container
    manager.freeze() / manager.thaw()  # pause / resume
    manager.pids() -> list[int]
    manager.stats() -> Stats           # cpu, memory, pids, blkio
    manager.oom_kills() -> int         # OOM kills seen so far
    manager.kill(sig)                  # every process in the cgroup
    manager.destroy()                  # remove the cgroup(s); processes must be gone
    manager.frozen() / manager.exists()
    manager.delegate(uid, gid)         # v2: hand the subtree to a user-namespaced container
    manager.paths -> dict[str, str]    # save these; load_manager(paths) reopens the same cgroup
                                       # (a relative cgroupsPath depends on the caller's cgroup)

Errors are CgroupError, one line each. The concrete implementation lives in manager.py
(interface, detection), v1.py and v2.py; paths.py interprets cgroupsPath, resources.py checks
linux.resources, devices.py turns device rules into v1 files or a v2 eBPF program, stats.py holds
Stats. See docs/cgroups.md.
"""

from cais.runtime.cgroups.errors import CgroupError
from cais.runtime.cgroups.manager import Manager, load_manager, mode, open_manager

__all__ = ["CgroupError", "Manager", "Stats", "load_manager", "mode", "open_manager"]


def __getattr__(name: str) -> type:
    if name == "Stats":  # dataclasses (and inspect, ast...) only for those who read stats
        from cais.runtime.cgroups.stats import Stats

        return Stats
    raise AttributeError(f"module 'cais.runtime.cgroups' has no attribute {name!r}")
