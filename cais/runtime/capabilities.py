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


def bounding_set() -> int | None:
    """The calling thread's bounding set, read at once from /proc/self/status (CapBnd) rather
    than one prctl per capability; None if that cannot be read. Only where /proc is the host's:
    a container could mount its own files there."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def drop_bounding(config: dict[str, Any], warn: Any = None, held: int | None = None) -> int:
    """Drop every capability not in the bounding set (needs CAP_SETPCAP: do it while still root).
    `held`: the bounding set as it is (bounding_set()), else read here one capability at a time.

    Returns the capabilities the runtime can grant: those asked for that its own bounding set
    still holds. Asking for more (`--privileged` under a runtime that was itself confined) is
    granted as far as possible with a warning, rather than failing the container.
    """
    keep = mask(config.get("bounding", []), warn)
    if held is None:
        held = 0
        for number in range(caps.last_cap() + 1):
            if prctl.capbset_read(number):
                held |= 1 << number
    held &= (1 << (caps.last_cap() + 1)) - 1
    for number in range(caps.last_cap() + 1):
        if held & ~keep & (1 << number):
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
