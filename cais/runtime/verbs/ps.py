"""ps: the host pids of a container's processes."""

from __future__ import annotations

import os

from cais.runtime import cgroup, store


def ps(container_id: str, *, root: str = store.DEFAULT_ROOT) -> list[int]:
    container = store.load(root, container_id)
    manager = cgroup.of(container)
    if manager is not None:
        return sorted(manager.pids())
    if not container.alive():
        return []
    # Without a cgroup backend: the processes of the init's pid namespace (when it has its own).
    own = any(n["type"] == "pid" and not n.get("path") for n in container.config["linux"].get("namespaces", []))
    if not own:
        return [container.pid]
    target = os.readlink(f"/proc/{container.pid}/ns/pid")
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == target:
                    pids.append(int(name))
            except OSError:
                continue
    return sorted(pids)
