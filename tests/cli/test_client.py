"""The CLI's own HTTP client: streams through the real caisd (framing, stdin, chunked bodies,
hijacked attach/exec, exit codes), keep-alive, and one-line errors from a daemon that is not HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cais.cli.client import ApiError, Client, ProtocolError
from tests.caisd import VENV_BIN, Caisd


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode().strip()


def test_run_output_framing_stdin_and_exit_codes(daemon: Caisd) -> None:
    big = daemon.cais("run", "--rm", "busybox", "sh", "-c",
                      "head -c 300000 /dev/zero | tr '\\0' a; echo; echo err >&2; exit 7", check=False)
    assert big.returncode == 7
    assert big.stdout == b"a" * 300000 + b"\n" and big.stderr == b"err\n"
    piped = daemon.cais("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done", input=b"from stdin\n")
    assert piped.stdout == b"from stdin\ndone\n"
    assert daemon.cais("run", "--rm", "-t", "busybox", "echo", "tty").stdout == b"tty\r\n"


def test_exec_attach_logs_wait(daemon: Caisd) -> None:
    cid = out(daemon.cais("run", "-d", "busybox", "sh", "-c", "echo one; echo two >&2; "
                          "until [ -e /tmp/go ]; do sleep 0.1; done; sleep 2; echo late; exit 3"))
    try:
        assert daemon.cais("exec", cid, "sh", "-c", "echo e >&2; exit 5", check=False).returncode == 5
        assert daemon.cais("exec", "-i", cid, "cat", input=b"exec stdin").stdout == b"exec stdin"
        assert daemon.cais("exec", "-t", cid, "echo", "x").stdout == b"x\r\n"
        attach = subprocess.Popen([os.path.join(VENV_BIN, "cais"), "attach", "--no-stdin", cid],
                                  stdout=subprocess.PIPE, env={**os.environ, "CAIS_HOST": daemon.host})
        try:
            daemon.cais("exec", cid, "touch", "/tmp/go")  # the container says "late" 2 s later, and exits
            assert attach.communicate(timeout=60)[0] == b"late\n"
            assert attach.returncode == 3
        finally:
            attach.kill()
            attach.wait()
        assert out(daemon.cais("wait", cid)) == "3"
        logs = daemon.cais("logs", cid)
        assert (logs.stdout, logs.stderr) == (b"one\nlate\n", b"two\n")
    finally:
        daemon.cais("rm", "-f", cid, check=False)


def test_keep_alive_chunked_and_errors(daemon: Caisd) -> None:
    client = Client(daemon.host)
    try:
        assert client.call("GET", "/_ping", raw=True) == b"OK"
        idle = client._idle
        assert idle is not None
        assert isinstance(client.call("GET", "/containers/json", {"all": True}), list)
        assert client._idle is idle  # the same connection, kept alive
        with pytest.raises(ApiError) as e:
            client.call("GET", "/containers/cais-en-missing/json")
        assert e.value.status == 404 and "cais-en-missing" in str(e.value)
        events = list(client.json_lines("GET", "/events", {"since": 0, "until": 1}))  # chunked, ends
        assert events == []
        response = client.request("GET", "/version")
        assert response.getheader("content-type", "").startswith("application/json")
        assert b'"ApiVersion"' in response.read()
    finally:
        client.close()


@pytest.fixture
def fake_daemon() -> Iterator[Callable[[list[bytes]], str]]:
    """A unix socket whose connections get the given answers in turn (one per connection, then
    the connection is closed): what a broken or restarting daemon looks like to a client."""
    root = tempfile.mkdtemp(prefix="cais-en-cli-")
    servers: list[socket.socket] = []

    def start(answers: list[bytes]) -> str:
        path = os.path.join(root, f"{len(servers)}.sock")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen()
        servers.append(server)

        def serve() -> None:
            for answer in answers:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)
        threading.Thread(target=serve, daemon=True).start()
        return f"unix://{path}"
    yield start
    for server in servers:
        server.close()
    shutil.rmtree(root, ignore_errors=True)


def test_closed_keep_alive_connection_is_retried(fake_daemon) -> None:  # type: ignore[no-untyped-def]
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    client = Client(fake_daemon([ok, ok]))  # each connection answers once, then is closed
    assert client.call("GET", "/_ping", raw=True) == b"OK"
    assert client._idle is not None
    assert client.call("GET", "/_ping", raw=True) == b"OK"  # the kept connection was closed: a new one
    client.close()


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1, 2",  # closed mid-body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{not",  # not JSON
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n[]",
    b"",  # no answer at all
])
def test_a_daemon_that_is_not_http_is_a_one_line_error(fake_daemon, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    host = fake_daemon([answer] * 4)
    with pytest.raises(ProtocolError):
        Client(host).call("GET", "/containers/json")
    result = subprocess.run([os.path.join(VENV_BIN, "cais"), "-H", fake_daemon([answer] * 4), "ps"],
                            capture_output=True, timeout=30)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Cannot connect to the cais daemon at unix://"), lines


def test_tcp_with_mutual_tls() -> None:
    """tcp:// hosts: TLS with docker's DOCKER_CERT_PATH files (ca.pem, cert.pem, key.pem)."""
    from tests.caisd import caisd
    from tests.engine.test_daemon import _certs
    from tests.ports import free_port
    workdir = tempfile.mkdtemp(prefix="cais-en-cli-tls-")
    try:
        certs = _certs(workdir)
        shutil.copy(certs["client.pem"], os.path.join(workdir, "cert.pem"))
        shutil.copy(certs["client.key"], os.path.join(workdir, "key.pem"))
        host = f"tcp://127.0.0.1:{free_port()}"
        with caisd(bootstrap=False, extra=["-H", host, "--tlsverify", "--tlscacert", certs["ca.pem"], "--tlscert",
                                           certs["server.pem"], "--tlskey", certs["server.key"]]):
            cais = [os.path.join(VENV_BIN, "cais"), "-H", host]
            env = {**os.environ, "DOCKER_CERT_PATH": workdir}
            for _ in range(100):  # the TCP listener may come up just after the unix socket
                ps = subprocess.run([*cais, "ps", "-a"], capture_output=True, env=env, timeout=30)
                if ps.returncode == 0:
                    break
                time.sleep(0.1)
            assert ps.returncode == 0 and ps.stdout.startswith(b"CONTAINER ID"), ps.stderr
            version = subprocess.run([*cais, "version"], capture_output=True, env=env, timeout=30)
            assert version.returncode == 0 and b"Server" in version.stdout, version.stderr
            events = subprocess.run([*cais, "events", "--since", "0", "--until", "1"], capture_output=True,
                                    env=env, timeout=30)
            assert events.returncode == 0, events.stderr
            os.unlink(os.path.join(workdir, "cert.pem"))  # no client certificate: one line, no traceback
            anonymous = subprocess.run([*cais, "ps"], capture_output=True, env=env, timeout=30)
            assert anonymous.returncode != 0 and b"Traceback" not in anonymous.stderr
            assert len(anonymous.stderr.decode().strip().splitlines()) == 1, anonymous.stderr
            assert b"DOCKER_CERT_PATH" in anonymous.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_save_and_load_stream_both_ways(daemon: Caisd) -> None:
    """`save` reads a long body, `load` sends one with chunked transfer encoding (from a file or stdin)."""
    workdir = tempfile.mkdtemp(prefix="cais-en-cli-")
    try:
        tar = os.path.join(workdir, "busybox.tar")
        daemon.cais("save", "-o", tar, "busybox")
        assert os.path.getsize(tar) > 100_000
        assert b"Loaded image" in daemon.cais("load", "-i", tar).stdout
        with open(tar, "rb") as f:
            assert b"Loaded image" in daemon.cais("load", input=f.read()).stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
