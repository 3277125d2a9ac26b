"""process.rlimits, clamped (with a warning) where the host forbids raising a hard limit."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

from cais.runtime.errors import ConfigError


def apply(rlimits: list[dict[str, Any]], warn: Callable[[str], None]) -> None:
    for rl in rlimits:
        name = rl.get("type", "")
        number = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
        if number is None:
            raise ConfigError(f"unknown rlimit {name!r}")
        soft, hard = int(rl.get("soft", 0)), int(rl.get("hard", 0))
        if soft > hard:
            raise ConfigError(f"{name}: soft limit {soft} is above hard limit {hard}")
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, PermissionError, OSError):
            _, current_hard = resource.getrlimit(number)
            ceiling = current_hard if current_hard != resource.RLIM_INFINITY else hard
            if name == "RLIMIT_NOFILE":
                with open("/proc/sys/fs/nr_open") as f:
                    ceiling = min(ceiling, int(f.read()))
            clamped = (min(soft, ceiling), min(hard, ceiling))
            resource.setrlimit(number, clamped)
            warn(f"{name}: the host forbids {soft}/{hard}; clamped to {clamped[0]}/{clamped[1]}")
