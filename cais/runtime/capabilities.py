"""process.capabilities: the five sets, applied in the order the kernel allows."""

from __future__ import annotations

from typing import Any

from cais.linux import capabilities as caps
from cais.linux import prctl


def mask(names: list[str], warn: Any = None) -> int:
    known = caps.last_cap()
    value = 0
    for name in names:
        number = caps.NUMBERS.get(name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper())
        if number is None or number > known:
            if warn:
                warn(f"capability {name} is unknown to this kernel; ignored")
            continue
        value |= 1 << number
    return value


def drop_bounding(config: dict[str, Any], warn: Any = None) -> None:
    """Drop every capability not in the bounding set (needs CAP_SETPCAP: do it while still root)."""
    keep = mask(config.get("bounding", []), warn)
    for number in range(caps.last_cap() + 1):
        if not keep & (1 << number):
            prctl.capbset_drop(number)


def apply(config: dict[str, Any], warn: Any = None) -> None:
    """Set effective/permitted/inheritable, then raise the ambient ones (after the uid switch)."""
    caps.capset(mask(config.get("effective", []), warn), mask(config.get("permitted", []), warn),
                mask(config.get("inheritable", []), warn))
    prctl.ambient_clear()
    for number in range(caps.last_cap() + 1):
        if mask(config.get("ambient", [])) & (1 << number):
            prctl.ambient_raise(number)
