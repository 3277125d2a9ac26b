"""A token server for the distribution registry's `auth: token` mode (test only).

It hands out RS256 JWTs, signed with `openssl dgst` and carrying their certificate in `x5c`,
granting what was asked to the right Basic credentials and only `pull` to anonymous callers.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.registry.faults import serve_in_thread

ISSUER = "cais-test-issuer"
SERVICE = "cais-test-registry"
REFRESH_TOKEN = "cais-refresh-token"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    directory: str
    user: str
    password: str
    lifetime: int = 300
    requests: list[dict[str, str]] = field(default_factory=list)
    host: str = ""

    @property
    def cert(self) -> str:
        return os.path.join(self.directory, "token.crt")

    def _sign(self, claims: dict) -> str:
        with open(self.cert) as f:
            pem = "".join(line for line in f.read().splitlines() if "-----" not in line)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [pem]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(self.directory, "token.key")],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        scopes = request.query.getall("scope", [])
        authenticated = False
        if request.method == "POST":  # OAuth2 with an identity (refresh) token
            form = await request.post()
            scopes = str(form.get("scope", "")).split()
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != REFRESH_TOKEN:
                return web.json_response({"details": "bad refresh token"}, status=401)
            authorization, authenticated = "OAuth", True
        self.requests.append({"scope": " ".join(scopes), "auth": authorization[:5]})
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if (user, password) != (self.user, self.password):
                return web.json_response({"details": "wrong credentials"}, status=401)
            authenticated = True
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            granted = [a for a in actions.split(",") if authenticated or a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": self.user if authenticated else "", "aud": SERVICE, "exp": now + self.lifetime,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        token = self._sign(claims)
        return web.json_response({"token": token, "access_token": token, "expires_in": self.lifetime,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


@contextmanager
def token_server(directory: str, user: str, password: str) -> Iterator[TokenServer]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key",
                    "-out", "token.crt", "-days", "2", "-subj", "/CN=cais-test-token"],
                   cwd=directory, check=True, capture_output=True)
    server = TokenServer(directory, user, password)
    app = web.Application()
    app.router.add_get("/token", server.handle)
    app.router.add_post("/token", server.handle)
    with serve_in_thread(app) as host:
        server.host = host
        yield server
