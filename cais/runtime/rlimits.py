"""process.rlimits, clamped (with a warning) where the host forbids raising a hard limit."""

from __future__ import annotations

import resource

from cais.runtime.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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
            continue
        except (ValueError, OSError):
            pass
        ceilings = [resource.getrlimit(number)[1]]
        if name == "RLIMIT_NOFILE":  # root may go up to fs.nr_open, never past it
            with open("/proc/sys/fs/nr_open") as f:
                ceilings.insert(0, int(f.read()))
        for ceiling in ceilings:
            if ceiling == resource.RLIM_INFINITY:
                continue
            clamped = (min(soft, ceiling), min(hard, ceiling))
            try:
                resource.setrlimit(number, clamped)
            except (ValueError, OSError):
                continue
            warn(f"{name}: the host forbids {soft}/{hard}; clamped to {clamped[0]}/{clamped[1]}")
            break
        else:
            raise ConfigError(f"{name}: cannot set {soft}/{hard}")
