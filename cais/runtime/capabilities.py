"""process.capabilities: the five sets, applied in the order the kernel allows."""

from __future__ import annotations

from cais.linux import capabilities as caps
from cais.linux import prctl

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


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


def drop_bounding(config: dict[str, Any], warn: Any = None) -> int:
    """Drop every capability not in the bounding set (needs CAP_SETPCAP: do it while still root).

    Returns the capabilities the runtime can grant: those asked for that its own bounding set
    still holds. Asking for more (`--privileged` under a runtime that was itself confined) is
    granted as far as possible with a warning, rather than failing the container.
    """
    keep = mask(config.get("bounding", []), warn)
    held = 0
    for number in range(caps.last_cap() + 1):
        if prctl.capbset_read(number):
            held |= 1 << number
            if not keep & (1 << number):
                prctl.capbset_drop(number)
    missing = keep & ~held
    if missing and warn:
        names = [caps.NAMES[n] for n in range(caps.last_cap() + 1) if missing & (1 << n)]
        warn(f"the runtime itself lacks {', '.join(names)}: not granted")
    return held


def apply(config: dict[str, Any], grantable: int, warn: Any = None) -> None:
    """Set effective/permitted/inheritable, then raise the ambient ones (after the uid switch)."""
    caps.capset(mask(config.get("effective", []), warn) & grantable, mask(config.get("permitted", []), warn) & grantable,
                mask(config.get("inheritable", []), warn) & grantable)
    prctl.ambient_clear()
    ambient = mask(config.get("ambient", [])) & grantable
    for number in range(caps.last_cap() + 1):
        if ambient & (1 << number):
            prctl.ambient_raise(number)
