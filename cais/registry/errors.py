"""Errors a registry conversation can end with, each carrying a one-line message for the user."""

from __future__ import annotations

import json

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RegistryError(Exception):
    """A registry refused or failed a request."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.transient = transient  # a network failure or an overloaded registry: trying again may work


class Unauthorized(RegistryError):
    """401: no or wrong credentials."""


class Denied(RegistryError):
    """403: the credentials are valid but lack the permission."""


class NotFound(RegistryError):
    """404: no such repository, manifest, tag or blob."""


class TooManyRequests(RegistryError):
    """429: the registry's rate limit."""


class UnsupportedMedia(RegistryError):
    """A manifest of a kind cais cannot use."""


def describe(status: int, body: bytes) -> tuple[str | None, str]:
    """The first distribution-spec error in a response body as (code, 'CODE: message'), if any."""
    try:
        errors = json.loads(body)["errors"]
        first = errors[0]
        code = str(first.get("code", "UNKNOWN"))
        message = str(first.get("message", "")).strip()
        return code, f"{code}: {message}" if message else code
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body[:200].decode("utf-8", "replace").strip().splitlines()
        return None, f"HTTP {status}" + (f": {text[0]}" if text else "")


def from_status(status: int, body: bytes, what: str) -> RegistryError:
    """The error for a failed `what` (e.g. 'GET manifest busybox:latest') answered with `status`."""
    code, detail = describe(status, body)
    cls = {401: Unauthorized, 403: Denied, 404: NotFound, 429: TooManyRequests}.get(status, RegistryError)
    hint = {401: " (log in first: cais login)", 429: " (rate limited by the registry)"}.get(status, "")
    return cls(f"{what}: {detail}{hint}", status=status, code=code, transient=status in TRANSIENT_STATUS)
