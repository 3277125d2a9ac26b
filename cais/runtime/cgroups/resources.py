"""Checking an OCI ``linux.resources`` object before any of it reaches the kernel.

A wrong type or an impossible value is reported as one line naming the field
(``linux.resources.memory.limit: expected an integer, got 'lots'``), and nothing is written.
Unknown fields are ignored, as runc ignores them.
"""

from __future__ import annotations

from cais.runtime.cgroups.errors import CgroupError

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

    Resources = dict[str, Any]

_INT = "an integer"
_STR = "a string"
_BOOL = "a boolean"

_DEVICE = {"major": _INT, "minor": _INT}
_THROTTLE = {**_DEVICE, "rate": _INT}
_SCHEMA: dict[str, Any] = {
    "memory": {
        "limit": _INT,
        "reservation": _INT,
        "swap": _INT,
        "kernel": _INT,
        "kernelTCP": _INT,
        "swappiness": _INT,
        "disableOOMKiller": _BOOL,
        "useHierarchy": _BOOL,
        "checkBeforeUpdate": _BOOL,
    },
    "cpu": {
        "shares": _INT,
        "quota": _INT,
        "burst": _INT,
        "period": _INT,
        "realtimeRuntime": _INT,
        "realtimePeriod": _INT,
        "cpus": _STR,
        "mems": _STR,
        "idle": _INT,
    },
    "pids": {"limit": _INT},
    "blockIO": {
        "weight": _INT,
        "leafWeight": _INT,
        "weightDevice": [{**_DEVICE, "weight": _INT, "leafWeight": _INT}],
        "throttleReadBpsDevice": [_THROTTLE],
        "throttleWriteBpsDevice": [_THROTTLE],
        "throttleReadIOPSDevice": [_THROTTLE],
        "throttleWriteIOPSDevice": [_THROTTLE],
    },
    "hugepageLimits": [{"pageSize": _STR, "limit": _INT}],
    "network": {"classID": _INT, "priorities": [{"name": _STR, "priority": _INT}]},
    "rdma": {"*": {"hcaHandles": _INT, "hcaObjects": _INT}},
    "unified": {"*": _STR},
    "devices": [{"allow": _BOOL, "type": _STR, "major": _INT, "minor": _INT, "access": _STR}],
}


def _cpu_list(text: str) -> bool:
    """A list like 0-3,5 (re, and the enum it imports, would cost ~8 ms at every start)."""
    for item in text.strip().split(","):
        first, dash, last = item.partition("-")
        if not _number(first) or (dash and not _number(last)):
            return False
    return True


def _number(text: str) -> bool:
    return text.isdecimal() and text.isascii()


def _page_size(text: str) -> bool:
    """A size like 2MB or 1GB."""
    return len(text) > 2 and text[-1] == "B" and text[-2] in "KMG" and _number(text[:-2])


def _check(value: Any, schema: Any, where: str) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise CgroupError(f"{where}: expected an object, got {value!r}")
        for key, item in value.items():
            sub = schema.get(key, schema.get("*"))
            if sub is not None and item is not None:
                _check(item, sub, f"{where}.{key}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise CgroupError(f"{where}: expected a list, got {value!r}")
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]")
    else:
        ok = {
            _INT: isinstance(value, int) and not isinstance(value, bool),
            _STR: isinstance(value, str),
            _BOOL: isinstance(value, bool),
        }[schema]
        if not ok:
            raise CgroupError(f"{where}: expected {schema}, got {value!r}")


def _fail(field: str, message: str) -> None:
    raise CgroupError(f"linux.resources.{field}: {message}")


def validate(resources: Resources | None) -> Resources:
    """Type-check and range-check; returns the resources (``{}`` for None)."""
    if resources is None:
        return {}
    _check(resources, _SCHEMA, "linux.resources")
    memory = resources.get("memory") or {}
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        if memory.get(key) is not None and memory[key] < -1:
            _fail(f"memory.{key}", f"{memory[key]} is negative (use -1 for no limit)")
    limit, swap = memory.get("limit") or 0, memory.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        _fail("memory.swap", f"memory+swap limit {swap} is below the memory limit {limit}")
    if memory.get("swappiness") is not None and not 0 <= memory["swappiness"] <= 100:
        _fail("memory.swappiness", f"{memory['swappiness']} is outside 0-100")
    cpu = resources.get("cpu") or {}
    for key in ("cpus", "mems"):
        if cpu.get(key) and not _cpu_list(cpu[key]):
            _fail(f"cpu.{key}", f"{cpu[key]!r} is not a list like 0-3,5")
    if cpu.get("shares") is not None and cpu["shares"] < 0:
        _fail("cpu.shares", f"{cpu['shares']} is negative")
    if cpu.get("period") is not None and cpu["period"] < 0:
        _fail("cpu.period", f"{cpu['period']} is negative")
    block = resources.get("blockIO") or {}
    for key in ("weight", "leafWeight"):
        if block.get(key) and not 10 <= block[key] <= 1000:
            _fail(f"blockIO.{key}", f"{block[key]} is outside 10-1000")
    for i, dev in enumerate(block.get("weightDevice") or []):
        for key in ("major", "minor"):
            if dev.get(key) is None:
                _fail(f"blockIO.weightDevice[{i}].{key}", "is required")
    for kind in (
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ):
        for i, dev in enumerate(block.get(kind) or []):
            for key in ("major", "minor", "rate"):
                if dev.get(key) is None or dev[key] < 0:
                    _fail(f"blockIO.{kind}[{i}].{key}", "is required and must not be negative")
    for i, page in enumerate(resources.get("hugepageLimits") or []):
        if not _page_size(page.get("pageSize") or ""):
            _fail(f"hugepageLimits[{i}].pageSize", f"{page.get('pageSize')!r} is not a size like 2MB")
        if page.get("limit") is None:
            _fail(f"hugepageLimits[{i}].limit", "is required")
    for key in resources.get("unified") or {}:
        if "/" in key or key.startswith(".") or not key:
            _fail(f"unified.{key}", "is not a cgroup file name")
    for i, rule in enumerate(resources.get("devices") or []):
        if rule.get("allow") is None:
            _fail(f"devices[{i}].allow", "is required")
        if rule.get("type", "a") not in ("a", "b", "c"):
            _fail(f"devices[{i}].type", f"{rule['type']!r} is not one of a, b, c")
        access = rule.get("access", "rwm")
        if not access or set(access) - set("rwm"):
            _fail(f"devices[{i}].access", f"{access!r} is not made of r, w, m")
    return resources
