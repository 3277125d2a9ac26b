"""config.json logins (shared with the real docker CLI), credential helpers, and certs.d TLS settings."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import stat
import subprocess

import pytest

from cais.registry.client import Registry
from cais.registry.credentials import HUB_KEY, Credentials, CredentialsError, CredentialStore
from cais.registry.errors import RegistryError
from cais.registry.hosts import DOCKER_HUB_API, Endpoint, HostsError, RegistryHosts
from tests.registry.conftest import PASSWORD, USER, RunningRegistry

HELPER = """#!/bin/sh
# A docker credential helper keeping secrets as files under $CAIS_HELPER_DIR (test only).
dir="$CAIS_HELPER_DIR"
case "$1" in
store) python3 -c 'import json,sys,os,base64; d=json.load(sys.stdin); open(os.path.join(sys.argv[1], base64.b32encode(d["ServerURL"].encode()).decode()),"w").write(json.dumps(d))' "$dir" ;;
get) f="$dir/$(python3 -c 'import sys,base64; print(base64.b32encode(sys.stdin.read().strip().encode()).decode())')"
     if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) rm -f "$dir/$(python3 -c 'import sys,base64; print(base64.b32encode(sys.stdin.read().strip().encode()).decode())')" ;;
esac
"""


def test_auths_round_trip_and_docker_reads_it(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "config.json")
    with open(path, "w") as f:
        json.dump({"auths": {}, "detachKeys": "ctrl-x"}, f)
    store = CredentialStore(path)
    store.store("127.0.0.1:5000", Credentials("alice", "s3:cret"))
    store.store("docker.io", Credentials("bob", "hub"))
    assert store.get("127.0.0.1:5000") == Credentials("alice", "s3:cret")
    assert store.get("index.docker.io") == Credentials("bob", "hub")
    with open(path) as f:
        config = json.load(f)
    assert config["detachKeys"] == "ctrl-x"  # other settings survive
    assert base64.b64decode(config["auths"][HUB_KEY]["auth"]) == b"bob:hub"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # the real docker CLI sees the login (and its logout removes it for cais too)
    if shutil.which("docker"):
        proc = subprocess.run(["docker", "--config", tmp_root, "logout", "127.0.0.1:5000"],
                              capture_output=True, text=True, timeout=30)
        assert "Removing login credentials for 127.0.0.1:5000" in proc.stdout, proc.stderr
        assert store.get("127.0.0.1:5000") is None
    assert store.erase("docker.io") and store.get("docker.io") is None
    assert not store.erase("docker.io")


def test_entries_written_by_docker_forms(tmp_root: str) -> None:
    path = os.path.join(tmp_root, "config.json")
    with open(path, "w") as f:
        json.dump({"auths": {"https://reg.example:5000/v2/": {"auth": base64.b64encode(b"u:p").decode()},
                             "tok.example": {"identitytoken": "refresh-me"},
                             "bad.example": {"auth": "!!!"}}}, f)
    store = CredentialStore(path)
    assert store.get("reg.example:5000") == Credentials("u", "p")
    assert store.get("tok.example").identity_token == "refresh-me"
    with pytest.raises(CredentialsError, match="malformed auth entry"):
        store.get("bad.example")
    with open(path, "w") as f:
        f.write("{broken")
    with pytest.raises(CredentialsError, match="cannot read"):
        store.get("reg.example:5000")


def test_credential_helpers(tmp_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = os.path.join(tmp_root, "bin")
    secrets = os.path.join(tmp_root, "secrets")
    os.makedirs(bindir)
    os.makedirs(secrets)
    helper = os.path.join(bindir, "docker-credential-caistest")
    with open(helper, "w") as f:
        f.write(HELPER)
    os.chmod(helper, 0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("CAIS_HELPER_DIR", secrets)
    path = os.path.join(tmp_root, "config.json")
    with open(path, "w") as f:
        json.dump({"credsStore": "caistest", "credHelpers": {"other.example": "missing"}}, f)
    store = CredentialStore(path)
    assert store.get("127.0.0.1:5000") is None
    store.store("127.0.0.1:5000", Credentials("carol", "pw"))
    assert store.get("127.0.0.1:5000") == Credentials("carol", "pw")
    with open(path) as f:
        assert json.load(f)["auths"] == {"127.0.0.1:5000": {}}  # no secret in the file
    assert len(os.listdir(secrets)) == 1
    assert store.erase("127.0.0.1:5000")
    assert os.listdir(secrets) == [] and store.get("127.0.0.1:5000") is None
    with pytest.raises(CredentialsError, match="docker-credential-missing is not installed"):
        store.get("other.example")


def test_endpoints() -> None:
    hosts = RegistryHosts(mirrors=["https://mirror.example:5000"], insecure=["10.1.0.0/16", "plain.example"])
    assert [e.host for e in hosts.endpoints("docker.io")] == ["mirror.example:5000", DOCKER_HUB_API]
    assert hosts.endpoints("docker.io")[0].mirror
    assert hosts.endpoints("quay.io") == [Endpoint("quay.io")]
    for insecure in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000", "10.1.2.3", "plain.example"):
        assert [e.scheme for e in hosts.endpoints(insecure)] == ["https", "http"], insecure
        assert not hosts.endpoints(insecure)[0].verify
    with pytest.raises(HostsError, match="invalid registry mirror"):
        RegistryHosts(mirrors=["ftp://x"]).endpoints("docker.io")


def test_certs_d_ca_and_client_certificate(tls_dir: str, tmp_root: str) -> None:
    """A registry that demands a client certificate: cais finds it (and the CA) in certs.d/HOST:PORT/."""
    from tests.registry.conftest import distribution_registry

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_root, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=cais-client")
    openssl("x509", "-req", "-in", "client.csr", "-CA", os.path.join(tls_dir, "ca.crt"), "-CAkey",
            os.path.join(tls_dir, "ca.key"), "-CAcreateserial", "-out", "client.cert", "-days", "1")
    with distribution_registry(tls_dir, client_ca=os.path.join(tls_dir, "ca.crt")) as reg:
        with pytest.raises(RegistryError):  # CA trusted but no client certificate: refused
            asyncio.run(_tags(reg, reg.hosts()))
        for name in ("client.cert", "client.key"):
            shutil.copy(os.path.join(tmp_root, name), os.path.join(reg.certs_d, reg.host, name))
        with pytest.raises(RegistryError, match="NAME_UNKNOWN|404"):  # it got through TLS and auth
            asyncio.run(_tags(reg, reg.hosts()))
        os.unlink(os.path.join(reg.certs_d, reg.host, "client.cert"))
        with pytest.raises(RegistryError, match="missing client certificate"):
            asyncio.run(_tags(reg, reg.hosts()))


def test_certs_d_ca_for_a_verified_registry(tls_dir: str, tmp_root: str) -> None:
    os.makedirs(os.path.join(tmp_root, "registry.test:5443"))
    shutil.copy(os.path.join(tls_dir, "ca.crt"), os.path.join(tmp_root, "registry.test:5443", "ca.crt"))
    hosts = RegistryHosts(certs_dirs=(tmp_root,))
    [endpoint] = hosts.endpoints("registry.test:5443")
    ctx = hosts.ssl_context(endpoint)
    assert ctx is not None and ctx.verify_mode.name == "CERT_REQUIRED" and ctx.check_hostname
    assert any(dict(x[0] for x in c["subject"]).get("commonName") == "cais-test-ca" for c in ctx.get_ca_certs())


async def _tags(reg: RunningRegistry, hosts: RegistryHosts) -> list[str]:
    async with Registry(reg.host, hosts=hosts, credentials=Credentials(USER, PASSWORD)) as r:
        return await r.list_tags("cais/none-yet")
