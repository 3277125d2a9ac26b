"""The runtime's door to cais.runtime.cgroups (v1/v2 backends): its errors become RuntimeFailure."""

from __future__ import annotations

from cais.runtime.errors import CgroupsUnavailable, RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


class _Guarded:
    """The cgroup manager, with CgroupError turned into the runtime's own error class."""

    def __init__(self, manager: Any, error: type[Exception]) -> None:
        self._manager = manager
        self._error = error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._manager, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except self._error as e:
                raise RuntimeFailure(f"cgroups: {e}") from None

        return call


def manager(config: dict[str, Any], container_id: str, systemd: bool = False) -> Any:
    """The container's cgroup manager, or None when no backend is available on this build."""
    try:
        from cais.runtime.cgroups import CgroupError, open_manager
    except ImportError:
        return None
    try:
        found = open_manager(config.get("linux", {}).get("cgroupsPath"), container_id, systemd)
    except CgroupError as e:
        raise RuntimeFailure(f"cgroups: {e}") from None
    return _Guarded(found, CgroupError)


def of(container: Any) -> Any:
    """The manager of an existing container (a store.Container), or None without a backend.

    Reopened from the paths saved at create, never resolved again: a relative or empty
    cgroupsPath is relative to the cgroup of the process resolving it, so a later command run
    from another cgroup would reach (and leave behind) a different one.
    """
    paths = container.data.get("cgroup_paths")
    if paths is None:  # no backend at create, or a state written before paths were saved
        return manager(container.config, container.id, container.data.get("systemd_cgroup", False))
    try:
        from cais.runtime.cgroups import CgroupError, load_manager
    except ImportError:
        return None
    try:
        return _Guarded(load_manager(paths), CgroupError)
    except CgroupError as e:
        raise RuntimeFailure(f"cgroups: {e}") from None


def required(container: Any) -> Any:
    m = of(container)
    if m is None:
        raise CgroupsUnavailable("cgroups are not available in this build of cais-runtime")
    return m


# What every container may use whatever linux.resources.devices says: the default nodes, the pty
# multiplexer and the ptys (libcontainer's AllowedDevices). Unlike runc, not `c *:* m` / `b *:* m`:
# creating other device nodes is refused too (a spec that wants it says so in its rules).
_ALWAYS_ALLOWED = [
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def resources(config: dict[str, Any]) -> dict[str, Any]:
    """linux.resources with the devices every container gets and those of linux.devices allowed."""
    linux = config.get("linux", {})
    res = dict(linux.get("resources", {}))
    listed = [{"allow": True, "type": d["type"], "major": d.get("major"), "minor": d.get("minor"),
               "access": "rwm"} for d in linux.get("devices", []) if d.get("type") in ("c", "b")]
    res["devices"] = [*res.get("devices", []), *_ALWAYS_ALLOWED, *listed]
    return res
