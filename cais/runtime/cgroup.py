"""The runtime's door to cais.runtime.cgroups (v1/v2 backends), tolerant of its absence."""

from __future__ import annotations

from typing import Any

from cais.runtime.errors import CgroupsUnavailable


def manager(config: dict[str, Any], container_id: str, systemd: bool = False) -> Any:
    """The container's cgroup manager, or None when no backend is available on this build."""
    try:
        from cais.runtime.cgroups import open_manager
    except ImportError:
        return None
    return open_manager(config.get("linux", {}).get("cgroupsPath"), container_id, systemd)


def required(config: dict[str, Any], container_id: str, systemd: bool = False) -> Any:
    m = manager(config, container_id, systemd)
    if m is None:
        raise CgroupsUnavailable("cgroups are not available in this build of cais-runtime")
    return m
