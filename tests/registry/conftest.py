"""Real registries for the registry tests: the CNCF distribution registry (Debian's docker-registry)
and cais's own server, each plain and with htpasswd auth behind TLS (a CA made here), on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from cais.registry.credentials import Credentials
from cais.registry.hosts import RegistryHosts
from tests.ports import free_port
from tests.registry.images import tar_directory, tar_files, write_oci_layout
from tests.registry.tokens import ISSUER, SERVICE, TokenServer

USER, PASSWORD = "cais", "quay-secret"


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    root: str
    certs_d: str | None = None  # a certs.d directory trusting this registry's CA
    ca_dir: str | None = None  # for skopeo --*-cert-dir
    auth: bool = False

    @property
    def credentials(self) -> Credentials | None:
        return Credentials(USER, PASSWORD) if self.auth else None

    def hosts(self) -> RegistryHosts:
        return RegistryHosts(certs_dirs=(self.certs_d,) if self.certs_d else ())

    def skopeo_args(self, side: str) -> list[str]:
        """TLS and credential flags for skopeo's `side` ('src' or 'dest'; '' for inspect)."""
        prefix = f"--{side}-" if side else "--"
        args = [f"{prefix}cert-dir={self.ca_dir}"] if self.ca_dir else [f"{prefix}tls-verify=false"]
        if self.auth:
            args.append(f"{prefix}creds={USER}:{PASSWORD}")
        return args


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


@contextmanager
def _process(args: list[str], url: str, ca: str | None, log_path: str,
             tcp_only: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ctx = ssl.create_default_context(cafile=ca) if ca else None
        deadline = time.monotonic() + 30
        while True:
            try:
                if tcp_only:  # the server wants a client certificate: an open port is enough
                    host, port = url.split("/")[2].split(":")
                    socket.create_connection((host, int(port)), timeout=2).close()
                else:
                    urllib.request.urlopen(url, timeout=2, context=ctx)  # noqa: S310 - loopback test URL
                break
            except urllib.error.HTTPError:
                break  # 401 from an auth-protected registry: it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(log_path) as f:
                        raise RuntimeError(f"{args[0]} did not start:\n{f.read()[-3000:]}") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def tls_dir() -> Iterator[str]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and a bcrypt htpasswd file."""
    top = tempfile.mkdtemp(prefix="cais-registry-tls-")
    try:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=top, check=True, capture_output=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cais-test-ca")
        openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        with open(os.path.join(top, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
        if shutil.which("htpasswd") is None:
            pytest.skip("htpasswd is not installed (Debian package apache2-utils)")
        subprocess.run(["htpasswd", "-Bbc", os.path.join(top, "htpasswd"), USER, PASSWORD],
                       check=True, capture_output=True)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _trust(tls: str, top: str, host: str) -> tuple[str, str]:
    """A certs.d tree (for cais) and a cert dir (for skopeo) that trust the test CA for `host`."""
    certs_d = os.path.join(top, "certs.d")
    os.makedirs(os.path.join(certs_d, host))
    shutil.copy(os.path.join(tls, "ca.crt"), os.path.join(certs_d, host, "ca.crt"))
    return certs_d, os.path.join(certs_d, host)


@contextmanager
def distribution_registry(tls: str | None = None, client_ca: str | None = None,
                          token: TokenServer | None = None) -> Iterator[RunningRegistry]:
    """docker-registry on a free loopback port; with `tls`, also htpasswd auth (and client certificates
    signed by `client_ca` when given); with `token`, bearer tokens from that token server."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    top = tempfile.mkdtemp(prefix="cais-registry-dist-")
    try:
        host = f"127.0.0.1:{free_port()}"
        http: dict = {"addr": host, "secret": "cais-test-secret"}
        config: dict = {
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(top, "data")}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http}
        certs_d = ca_dir = None
        if token:
            config["auth"] = {"token": {"realm": f"http://{token.host}/token", "service": SERVICE,
                                        "issuer": ISSUER, "rootcertbundle": token.cert}}
        if tls:
            http["tls"] = {"certificate": os.path.join(tls, "server.crt"), "key": os.path.join(tls, "server.key")}
            if client_ca:
                http["tls"]["clientcas"] = [client_ca]
            config["auth"] = {"htpasswd": {"realm": "cais-test", "path": os.path.join(tls, "htpasswd")}}
            certs_d, ca_dir = _trust(tls, top, host)
        path = os.path.join(top, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        url = f"{'https' if tls else 'http'}://{host}/v2/"
        with _process(["docker-registry", "serve", path], url, tls and os.path.join(tls, "ca.crt"),
                      os.path.join(top, "registry.log"), tcp_only=bool(client_ca)):
            yield RunningRegistry(host, top, certs_d, ca_dir, auth=bool(tls or token))
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def cais_registry(tls: str | None = None, upload_ttl: float | None = None) -> Iterator[RunningRegistry]:
    """`python -m cais.registry.server` on a free loopback port; with `tls`, also htpasswd auth."""
    top = tempfile.mkdtemp(prefix="cais-registry-srv-")
    try:
        host = f"127.0.0.1:{free_port()}"
        args = [sys.executable, "-m", "cais.registry.server", "--addr", host, "--root", os.path.join(top, "data")]
        if upload_ttl is not None:
            args += ["--upload-ttl", str(upload_ttl)]
        certs_d = ca_dir = None
        if tls:
            args += ["--htpasswd", os.path.join(tls, "htpasswd"), "--tls-cert", os.path.join(tls, "server.crt"),
                     "--tls-key", os.path.join(tls, "server.key")]
            certs_d, ca_dir = _trust(tls, top, host)
        url = f"{'https' if tls else 'http'}://{host}/v2/"
        with _process(args, url, tls and os.path.join(tls, "ca.crt"), os.path.join(top, "server.log")):
            yield RunningRegistry(host, top, certs_d, ca_dir, auth=bool(tls))
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def distribution() -> Iterator[RunningRegistry]:
    with distribution_registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def distribution_auth(tls_dir: str) -> Iterator[RunningRegistry]:
    with distribution_registry(tls_dir) as reg:
        yield reg


@pytest.fixture(scope="session")
def cais_server() -> Iterator[RunningRegistry]:
    with cais_registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def cais_server_auth(tls_dir: str) -> Iterator[RunningRegistry]:
    with cais_registry(tls_dir) as reg:
        yield reg


@dataclass
class Layout:
    path: str
    digest: str  # the image manifest's digest

    def ref(self, tag: str = "latest") -> str:
        return f"oci:{self.path}:{tag}"


@pytest.fixture(scope="session")
def busybox_layout(busybox_dir: str) -> Iterator[Layout]:
    """An OCI layout of busybox: the rootfs as one layer plus a small second layer."""
    top = tempfile.mkdtemp(prefix="cais-registry-layout-")
    try:
        path = os.path.join(top, "busybox")
        digest = write_oci_layout(path, [tar_directory(busybox_dir), tar_files({"etc/cais": b"quay\n"})])
        yield Layout(path, digest)
    finally:
        shutil.rmtree(top, ignore_errors=True)
