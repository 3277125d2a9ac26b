"""caisd's flags: socket permissions, TCP only with mutual TLS, daemon.json like dockerd's."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.caisd import VENV_BIN, caisd
from tests.ports import free_port


@pytest.fixture
def workdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="cais-en-d-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _caisd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([os.path.join(VENV_BIN, "caisd"), *args], capture_output=True, timeout=timeout)


def test_socket_is_root_only() -> None:
    with caisd(bootstrap=False) as d:
        st = os.stat(d.sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0 and st.st_gid == 0


def test_bad_configuration_is_one_line(workdir: str) -> None:
    cfg = os.path.join(workdir, "daemon.json")
    common = ["--data-root", f"{workdir}/data", "--exec-root", f"{workdir}/exec", "--config-file", cfg]
    with open(cfg, "w") as f:
        json.dump({"data-root": "/elsewhere"}, f)
    both = _caisd(*common)
    assert both.returncode == 1 and b"both as a flag and in the configuration file" in both.stderr
    with open(cfg, "w") as f:
        json.dump({"no-such-key": 1}, f)
    unknown = _caisd("--config-file", cfg)
    assert unknown.returncode == 1 and b"don't match any configuration option: no-such-key" in unknown.stderr
    with open(cfg, "w") as f:
        f.write("{broken")
    broken = _caisd("--config-file", cfg)
    assert broken.returncode == 1 and b"unable to configure the daemon" in broken.stderr
    with open(cfg, "w") as f:
        json.dump({}, f)
    tcp = _caisd(*common, "-H", "tcp://127.0.0.1:23750")
    assert tcp.returncode == 1 and b"without --tlsverify" in tcp.stderr
    for result in (both, unknown, broken, tcp):
        assert b"Traceback" not in result.stderr


def _certs(workdir: str) -> dict[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    paths = {name: os.path.join(workdir, name) for name in ("ca.pem", "ca.key", "server.pem", "server.key",
                                                            "client.pem", "client.key")}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=cais-en-ca")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=cais-en-{name}" if name == "client" else "/CN=127.0.0.1")
        ext = os.path.join(workdir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", ext)
    return paths


def test_tcp_needs_a_client_certificate(workdir: str) -> None:
    certs = _certs(workdir)
    port = free_port()
    with caisd(bootstrap=False) as d:
        args = d.args()
        args[args.index("--data-root") + 1] = f"{workdir}/data"
        args[args.index("--exec-root") + 1] = f"{workdir}/exec"
        args += ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", certs["ca.pem"],
                 "--tlscert", certs["server.pem"], "--tlskey", certs["server.key"]]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            ctx = ssl.create_default_context(cafile=certs["ca.pem"])
            ctx.load_cert_chain(certs["client.pem"], certs["client.key"])
            url = f"https://127.0.0.1:{port}/_ping"
            for _ in range(200):
                try:
                    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                        assert r.read() == b"OK"
                    break
                except (OSError, ssl.SSLError):
                    if proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            else:
                raise AssertionError("caisd did not answer on TCP")
            anonymous = ssl.create_default_context(cafile=certs["ca.pem"])
            with pytest.raises((ssl.SSLError, OSError)), \
                    urllib.request.urlopen(url, context=anonymous, timeout=5) as r:
                r.read()
        finally:
            proc.terminate()
            proc.wait(30)
            from tests.caisd import Caisd, _stop_supervisor
            _stop_supervisor(Caisd(root=workdir, sock="", cgroup_parent=d.cgroup_parent))
