"""The OCI runtime: an OCI bundle (config.json + rootfs) becomes a running container.

`cais-runtime` (cli.py) is the runc-compatible command line over this package; the engine
uses the same functions in-process (imported lazily, so the command line starts fast):

    create(id, bundle, *, root, console_socket, pid_file, preserve_fds, no_pivot, stdio)
    start(id, *, root)        state(id, *, root) -> dict      kill(id, sig, *, root, all)
    delete(id, *, root, force)                               exec_process(id, process, ...) -> pid
    pause / resume(id, *, root)   update(id, resources, *, root)   ps(id, *, root) -> [pid]
    list_containers(root) -> [state]

The container's init (and every exec'd process) is a child of the caller (clone with
CLONE_PARENT), so the caller can waitpid() for its exit status.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


DEFAULT_ROOT = "/run/cais-runtime"

_EXPORTS = {
    "create": "cais.runtime.verbs.create", "start": "cais.runtime.verbs.start", "state": "cais.runtime.verbs.state",
    "list_containers": "cais.runtime.verbs.state", "kill": "cais.runtime.verbs.kill", "delete": "cais.runtime.verbs.delete",
    "exec_process": "cais.runtime.verbs.exec", "pause": "cais.runtime.verbs.pause", "resume": "cais.runtime.verbs.pause",
    "update": "cais.runtime.verbs.update", "ps": "cais.runtime.verbs.ps", "run": "cais.runtime.verbs.run",
    "features": "cais.runtime.verbs.features",
    "RuntimeFailure": "cais.runtime.errors", "ConfigError": "cais.runtime.errors",
    "ContainerNotFound": "cais.runtime.errors", "ContainerExists": "cais.runtime.errors",
    "InvalidState": "cais.runtime.errors", "HookFailed": "cais.runtime.errors",
}
__all__ = ["DEFAULT_ROOT", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cais.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
