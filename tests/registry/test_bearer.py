"""Bearer token auth (Docker Hub's scheme) against the distribution registry in `auth: token` mode."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Iterator

import pytest

from cais.image.content import ContentStore
from cais.image.reference import parse
from cais.registry.client import Registry
from cais.registry.credentials import Credentials
from cais.registry.errors import Unauthorized
from cais.registry.pull import pull
from cais.registry.push import push
from tests.registry.conftest import PASSWORD, USER, Layout, RunningRegistry, distribution_registry, skopeo
from tests.registry.tokens import TokenServer, token_server


@pytest.fixture(scope="module")
def bearer() -> Iterator[tuple[RunningRegistry, TokenServer]]:
    with tempfile.TemporaryDirectory(prefix="cais-registry-token-") as top, \
            token_server(top, USER, PASSWORD) as tokens, distribution_registry(token=tokens) as reg:
        yield reg, tokens


def test_bearer_pull_push_and_token_cache(bearer: tuple[RunningRegistry, TokenServer], busybox_layout: Layout,
                                          tmp_root: str) -> None:
    reg, tokens = bearer
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}", busybox_layout.ref(),
           f"docker://{reg.host}/cais/bearer:v1")
    store = ContentStore(tmp_root)
    tokens.requests.clear()
    result = asyncio.run(pull(parse(f"{reg.host}/cais/bearer:v1"), store, hosts=reg.hosts()))  # anonymous pull
    assert result.manifest_digest == busybox_layout.digest
    assert tokens.requests == [{"scope": "repository:cais/bearer:pull", "auth": ""}]  # one token, cached
    # anonymous push: the token server grants only pull, the registry refuses with a clear error
    with pytest.raises(Unauthorized, match="UNAUTHORIZED|DENIED|401") as info:
        asyncio.run(push(parse(f"{reg.host}/cais/bearer-push:v1"), store, result.manifest_digest, hosts=reg.hosts()))
    assert "\n" not in str(info.value)
    tokens.requests.clear()
    creds = Credentials(USER, PASSWORD)
    asyncio.run(push(parse(f"{reg.host}/cais/bearer-push:v1"), store, result.manifest_digest, hosts=reg.hosts(),
                     credentials=creds, mount_from=("cais/bearer",)))
    # (token requests of the anonymous push's cancelled uploads may still arrive: look at the mount scope)
    mount_scope = "repository:cais/bearer-push:pull,push repository:cais/bearer:pull"
    assert [r["auth"] for r in tokens.requests if r["scope"] == mount_scope] == ["Basic"], tokens.requests
    inspected = skopeo("inspect", "--tls-verify=false", f"--creds={USER}:{PASSWORD}",
                       f"docker://{reg.host}/cais/bearer-push:v1")
    assert json.loads(inspected.stdout)["Digest"] == busybox_layout.digest
    with pytest.raises(Unauthorized, match="token"):
        asyncio.run(pull(parse(f"{reg.host}/cais/bearer:v1"), ContentStore(os.path.join(tmp_root, "x")),
                         hosts=reg.hosts(), credentials=Credentials(USER, "wrong")))


def test_expired_tokens_are_renewed(bearer: tuple[RunningRegistry, TokenServer], busybox_layout: Layout) -> None:
    reg, tokens = bearer
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}", busybox_layout.ref(),
           f"docker://{reg.host}/cais/bearer-renew:v1")  # a repository of its own: runs alone too
    tokens.lifetime = 13  # cached for three seconds (renewed ten seconds before expiry): room for a slow machine
    try:
        async def work() -> None:
            async with Registry(reg.host, hosts=reg.hosts(), credentials=Credentials(USER, PASSWORD)) as r:
                await r.list_tags("cais/bearer-renew")
                await r.list_tags("cais/bearer-renew")
                assert len(tokens.requests) == 1
                time.sleep(3.2)
                await r.list_tags("cais/bearer-renew")
                assert len(tokens.requests) == 2
        tokens.requests.clear()
        asyncio.run(work())
    finally:
        tokens.lifetime = 300


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_login_checks_then_stores(scheme: str, request: pytest.FixtureRequest, tmp_root: str) -> None:
    from cais.registry.credentials import CredentialStore
    from cais.registry.login import login, logout
    reg = request.getfixturevalue("distribution_auth") if scheme == "basic" else request.getfixturevalue("bearer")[0]
    store = CredentialStore(os.path.join(tmp_root, "config.json"))
    with pytest.raises(Unauthorized) as info:
        asyncio.run(login(reg.host, Credentials(USER, "wrong"), hosts=reg.hosts(), store=store))
    assert "\n" not in str(info.value)
    assert store.get(reg.host) is None
    asyncio.run(login(reg.host, Credentials(USER, PASSWORD), hosts=reg.hosts(), store=store))
    assert store.get(reg.host) == Credentials(USER, PASSWORD)
    assert logout(reg.host, store) and store.get(reg.host) is None


def test_identity_token(bearer: tuple[RunningRegistry, TokenServer], busybox_layout: Layout, tmp_root: str) -> None:
    """config.json's `identitytoken` is exchanged for access tokens with OAuth2's refresh_token grant."""
    from tests.registry.tokens import REFRESH_TOKEN
    reg, tokens = bearer
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}", busybox_layout.ref(),
           f"docker://{reg.host}/cais/oauth:v1")
    store = ContentStore(tmp_root)
    result = asyncio.run(pull(parse(f"{reg.host}/cais/oauth:v1"), store, hosts=reg.hosts()))
    tokens.requests.clear()
    asyncio.run(push(parse(f"{reg.host}/cais/oauth-push:v1"), store, result.manifest_digest, hosts=reg.hosts(),
                     credentials=Credentials("<token>", REFRESH_TOKEN)))
    assert tokens.requests and {r["auth"] for r in tokens.requests} == {"OAuth"}
    with pytest.raises(Unauthorized):
        asyncio.run(push(parse(f"{reg.host}/cais/oauth-push:v2"), store, result.manifest_digest, hosts=reg.hosts(),
                         credentials=Credentials("<token>", "stale")))


def test_challenge_parsing() -> None:
    from cais.registry.auth import parse_challenges
    [hub] = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                             'scope="repository:library/busybox:pull,push"')
    assert hub.scheme == "bearer" and hub.params == {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull,push"}
    basic, bearer = parse_challenges('Basic realm="a \\"quoted\\", realm", Bearer realm=https://x/t, error=invalid_token')
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'a "quoted", realm'})
    assert bearer.params == {"realm": "https://x/t", "error": "invalid_token"}
    assert parse_challenges("") == [] and [c.scheme for c in parse_challenges("Negotiate")] == ["negotiate"]
