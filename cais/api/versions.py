"""API versions cais serves: from docker's oldest supported to the newest the docker CLI 28.2 asks for."""

from __future__ import annotations

import re

MIN_API_VERSION = "1.24"
API_VERSION = "1.50"
BUILDER_VERSION = "1"  # the classic builder; "2" would promise BuildKit's gRPC session

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def parse(version: str) -> tuple[int, int] | None:
    m = _VERSION.match(version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check(version: str) -> str | None:
    """Return docker's error message for an unsupported client version, None when it is served."""
    v = parse(version)
    if v is None:
        return f"invalid API version: {version!r}"
    if v < parse(MIN_API_VERSION):  # type: ignore[operator]
        return (f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version")
    if v > parse(API_VERSION):  # type: ignore[operator]
        return f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
    return None


def at_least(version: str, other: str) -> bool:
    return (parse(version) or (0, 0)) >= (parse(other) or (0, 0))
