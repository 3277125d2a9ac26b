"""Basic authentication against an Apache htpasswd file with bcrypt entries (`htpasswd -B`).

Only bcrypt is accepted, as in the distribution registry: the other htpasswd formats (MD5-crypt,
SHA1, crypt) are too weak to guard a registry. The file is re-read when it changes. A bcrypt check
costs tens of milliseconds, so successful checks are remembered (as a hash of user, password and
entry) for as long as the entry is unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import os
from typing import Any

log = logging.getLogger(__name__)


class HtpasswdError(Exception):
    pass


class Htpasswd:
    def __init__(self, path: str) -> None:
        self.path = path
        self._entries: dict[str, bytes] = {}
        self._mtime: float | None = None
        self._verified: set[bytes] = set()
        self._load()

    def _load(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime == self._mtime:
                return
            with open(self.path, "rb") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise HtpasswdError(f"cannot read htpasswd file {self.path}: {e.strerror}") from None
        entries = {}
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            user, sep, hashed = line.partition(b":")
            if not sep or not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
                log.warning("%s:%d: ignored: not a bcrypt entry (use htpasswd -B)", self.path, number)
                continue
            entries[user.decode(errors="replace")] = hashed
        self._entries, self._mtime, self._verified = entries, mtime, set()

    async def check(self, authorization: str | None) -> str | None:
        """The user an `Authorization: Basic …` header authenticates, or None."""
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            user, sep, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        try:
            self._load()
        except HtpasswdError as e:
            log.error("%s", e)
            return None
        hashed = self._entries.get(user)
        if hashed is None:  # spend the same time as for a wrong password: do not reveal who exists
            some = next(iter(self._entries.values()), b"$2y$10$")
            cost = int(some[4:6]) if some[4:6].isdigit() else 10
            await asyncio.to_thread(_checkpw, password.encode(), _dummy_hash(cost))
            return None
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        if key in self._verified:
            return user
        if await asyncio.to_thread(_checkpw, password.encode(), hashed):
            self._verified.add(key)
            return user
        return None


def _bcrypt() -> Any:
    """The bcrypt module, imported only once a password is checked."""
    import bcrypt
    return bcrypt


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return _bcrypt().checkpw(password, hashed)
    except ValueError:  # a malformed entry
        return False


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    return _bcrypt().hashpw(b"cais-registry-dummy", _bcrypt().gensalt(min(max(cost, 4), 14)))
