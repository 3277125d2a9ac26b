"""Authorization for one registry: anonymous, Basic, or Bearer tokens from `WWW-Authenticate`.

The first 401 tells which scheme the registry wants. For Bearer the token server (`realm`) is
asked for a token covering `service` and the scopes a request needs (`repository:NAME:pull,push`),
with Basic credentials or an identity (refresh) token, or anonymously; tokens are cached per scope
set until shortly before they expire, and fetched again after a 401 that rejects them.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from cais.registry.credentials import Credentials
from cais.registry.errors import Unauthorized, from_status

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")
EXPIRY_MARGIN = 10.0  # renew a token this many seconds before it expires
DEFAULT_LIFETIME = 60.0  # the token spec's default expires_in


@dataclass
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value: 'Bearer realm="https://x",service="y",scope="a b"'."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m:
            break
        challenge = Challenge(m.group(1).lower())
        pos = m.end()
        while (p := _PARAM.match(header, pos)) is not None:
            value = p.group(2) if p.group(2) is not None else p.group(3)
            challenge.params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = p.end()
        challenges.append(challenge)
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return challenges


class Authorizer:
    """Produces the Authorization header for requests to one registry host."""

    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials | None,
                 ssl_for: Callable[[str], ssl.SSLContext | bool | None]) -> None:
        self._session = session
        self.credentials = credentials
        self._ssl_for = ssl_for
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            if self.credentials is None or self.credentials.identity_token:
                return None
            raw = f"{self.credentials.username}:{self.credentials.secret}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self.challenge.scheme == "bearer":
            key = tuple(sorted(set(scopes)))
            async with self._locks.setdefault(key, asyncio.Lock()):  # one token request for concurrent callers
                cached = self._tokens.get(key)
                if cached and cached[1] > time.monotonic():
                    return "Bearer " + cached[0]
                token, lifetime = await self._fetch_token(key)
                self._tokens[key] = (token, time.monotonic() + max(lifetime - EXPIRY_MARGIN, 1.0))
                return "Bearer " + token
        return None

    def challenged(self, www_authenticate: str | None, scopes: tuple[str, ...]) -> bool:
        """Take in a 401's challenge; True when asking again with fresh authorization may succeed."""
        known = {"basic", "bearer"}
        fresh = next((c for c in parse_challenges(www_authenticate or "") if c.scheme in known), None)
        if fresh is None:
            return False
        first = self.challenge is None or self.challenge.scheme != fresh.scheme
        self.challenge = fresh
        had_token = self._tokens.pop(tuple(sorted(set(scopes))), None) is not None
        if fresh.scheme == "basic":
            return first and self.credentials is not None
        return first or had_token

    async def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        assert self.challenge is not None
        realm = self.challenge.params.get("realm")
        if not realm or not realm.startswith(("https://", "http://")):
            raise Unauthorized(f"registry sent a bearer challenge without a usable realm: {realm!r}")
        service = self.challenge.params.get("service")
        wanted = list(scopes) or self.challenge.params.get("scope", "").split()
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "cais", "scope": " ".join(wanted)}
                if service:
                    form["service"] = service
                resp_ctx = self._session.post(realm, data=form, ssl=self._ssl_for(realm))
            else:
                params = [("scope", s) for s in wanted]
                if service:
                    params.insert(0, ("service", service))
                headers = {}
                if creds is not None:
                    raw = f"{creds.username}:{creds.secret}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                resp_ctx = self._session.get(realm, params=params, headers=headers, ssl=self._ssl_for(realm))
            async with resp_ctx as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise from_status(resp.status, body, f"token from {realm}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as e:
            raise Unauthorized(f"token from {realm}: {e}") from None
        except ValueError:
            raise Unauthorized(f"token from {realm}: not JSON") from None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"token from {realm}: no token in the answer")
        try:
            lifetime = float(data.get("expires_in") or DEFAULT_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        return token, lifetime
