"""Who may talk to caisd: the unix socket is 0660 root:--group; TCP needs mutual TLS (client
certificates signed by --tlscacert), plain TCP is refused unless forced with --insecure-tcp."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.caisd import VENV_BIN, caisd
from tests.ports import free_port


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs() -> Iterator[str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as dockerd's docs make them."""
    with tempfile.TemporaryDirectory(prefix="cais-se-tls-") as d:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
                "-days", "2", "-subj", "/CN=cais-se-ca", cwd=d)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue-key.pem", "-out", "rogue.pem",
                "-days", "2", "-subj", "/CN=cais-se-rogue", cwd=d)
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                          ("client", "extendedKeyUsage=clientAuth")):
            with open(os.path.join(d, f"{name}.ext"), "w") as f:
                f.write(ext + "\n")
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                    "-subj", f"/CN=cais-se-{name}", cwd=d)
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                    "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
        yield d


def test_unix_socket_is_0660_root_and_group() -> None:
    with caisd(bootstrap=False, extra=["--group", "4242"]) as d:
        st = os.stat(d.sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0 and st.st_gid == 4242
    with caisd(bootstrap=False) as d:
        st = os.stat(d.sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0 and st.st_gid == 0


def test_plain_tcp_is_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="cais-se-d-") as root:
        with open(f"{root}/daemon.json", "w") as f:
            f.write("{}")
        result = subprocess.run([os.path.join(VENV_BIN, "caisd"), "--data-root", f"{root}/data", "--exec-root",
                                 f"{root}/exec", "--config-file", f"{root}/daemon.json", "-H",
                                 f"tcp://127.0.0.1:{free_port()}"], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"refusing to listen" in result.stderr and b"Traceback" not in result.stderr


def test_insecure_tcp_when_forced_with_a_loud_warning() -> None:
    port = free_port()
    with caisd(bootstrap=False, extra=["-H", f"tcp://127.0.0.1:{port}", "--insecure-tcp"]) as d:
        out = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{port}", "version", "--format",
                              "{{.Server.APIVersion}}"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "WITHOUT MUTUAL TLS" in d.read_log()


def test_tcp_with_tlsverify_needs_a_client_certificate(certs: str) -> None:
    port = free_port()
    tls = ["--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert", f"{certs}/server-cert.pem",
           "--tlskey", f"{certs}/server-key.pem"]
    with caisd(bootstrap=False, extra=["-H", f"tcp://127.0.0.1:{port}", *tls]) as d:
        host = ["-H", f"tcp://127.0.0.1:{port}"]
        good = subprocess.run(["docker", *host, "--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert",
                               f"{certs}/client-cert.pem", "--tlskey", f"{certs}/client-key.pem", "version",
                               "--format", "{{.Server.APIVersion}}"], capture_output=True, timeout=60)
        assert good.returncode == 0 and good.stdout.strip() == b"1.50", good.stderr
        # no client certificate: the handshake fails
        ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                pytest.raises((ssl.SSLError, ConnectionError)), ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not s.recv(64)
            raise ConnectionError("closed without an answer")
        # plain HTTP on the TLS port: no answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not raw.recv(64).startswith(b"HTTP/1.1 200")
        # a client certificate from another CA: refused
        other = subprocess.run(["docker", *host, "--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert",
                                f"{certs}/rogue.pem", "--tlskey", f"{certs}/rogue-key.pem", "version"],
                               capture_output=True, timeout=60)
        assert other.returncode != 0
        assert d.ping()

