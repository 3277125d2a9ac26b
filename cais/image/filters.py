"""docker's filter semantics for images (dangling, label, reference, until) and its time formats."""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import UTC, datetime

from cais.image.errors import InvalidImage

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: object) -> float:
    """RFC 3339 with nanoseconds (Go's format) → seconds since the epoch; 0 if absent or bad."""
    if not value or not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def format_time(ts: float) -> str:
    if ts <= 0:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def truthy(value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidImage(f"invalid filter 'dangling={value}'")


def match_labels(labels: dict[str, str], wanted: list[str], unwanted: list[str]) -> bool:
    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    return all(has(s) for s in wanted) and not any(has(s) for s in unwanted)


def match_reference(familiar: str, pattern: str) -> bool:
    """reference.FamiliarMatch: the whole reference, or its name (``repo:tag``, ``repo@digest``)."""
    name = familiar.partition("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return fnmatch.fnmatchcase(familiar, pattern) or fnmatch.fnmatchcase(name, pattern)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_until(value: str) -> float:
    """docker's `until`: a Go duration before now (``24h``, ``1h30m``), a unix time, or an RFC 3339 date."""
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+", value):
        return time.time() - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    ts = parse_time(value if "T" in value or ":" in value else value + "T00:00:00Z")
    if ts == 0.0:
        raise InvalidImage(f"invalid filter 'until={value}'")
    return ts
