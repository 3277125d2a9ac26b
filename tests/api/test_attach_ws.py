"""GET /containers/{id}/attach/ws: docker-py's websocket attach and aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import aiohttp
import docker
import pytest

from tests.caisd import Caisd
from tests.wait import wait_for


@contextlib.contextmanager
def tcp_forward(unix_path: str) -> Iterator[str]:
    """127.0.0.1:PORT relayed to the daemon's unix socket: docker-py opens websockets over TCP only
    (and caisd serves TCP with mutual TLS only, which websocket-client cannot present)."""
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(unix_path)
            conns.extend((client, upstream))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for s in conns:
            s.close()


@pytest.fixture
def api(daemon: Caisd) -> Iterator[docker.APIClient]:
    with tcp_forward(daemon.sock) as address:
        client = docker.APIClient(base_url=f"tcp://{address}", timeout=60)
        try:
            yield client
        finally:
            client.close()


def _receive_all(ws, deadline: float = 20) -> bytes:  # type: ignore[no-untyped-def]
    import websocket
    ws.settimeout(deadline)
    got = b""
    with contextlib.suppress(websocket.WebSocketConnectionClosedException):
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert opcode == websocket.ABNF.OPCODE_BINARY
            got += data
    return got


def test_docker_py_websocket_stdin_and_output(api: docker.APIClient) -> None:
    cid = api.create_container("busybox", ["sh", "-c", "echo ready; read line; echo got:$line; echo oops >&2"],
                               stdin_open=True)["Id"]
    try:
        ws = api.attach_socket(cid, {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}, ws=True)
        api.start(cid)
        ws.settimeout(20)
        assert ws.recv() == b"ready\n"
        ws.send_binary(b"quay\n")
        rest = _receive_all(ws)
        assert b"got:quay\n" in rest and b"oops\n" in rest  # raw bytes: no 8-byte stream headers
        assert api.wait(cid, timeout=30)["StatusCode"] == 0
        # logs=1 replays what the container wrote; only the chosen streams
        ws = api.attach_socket(cid, {"logs": 1, "stdout": 1}, ws=True)
        assert _receive_all(ws) == b"ready\ngot:quay\n"
    finally:
        api.remove_container(cid, force=True)


def test_docker_py_websocket_stdin_once_and_detach(api: docker.APIClient) -> None:
    once = api.create_container("busybox", ["sh", "-c", "cat; echo done"], stdin_open=True)["Id"]  # StdinOnce too
    long = api.create_container("busybox", ["cat"], stdin_open=True)["Id"]
    try:
        ws = api.attach_socket(once, {"stdin": 1, "stdout": 1, "stream": 1}, ws=True)
        api.start(once)
        ws.send_binary(b"line\n")
        ws.settimeout(20)
        assert ws.recv() == b"line\n"
        ws.close()  # the client is gone: the end of a StdinOnce container's stdin
        assert api.wait(once, timeout=30)["StatusCode"] == 0
        assert api.logs(once) == b"line\ndone\n"

        api.start(long)
        ws = api.attach_socket(long, {"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x"}, ws=True)
        ws.send_binary(b"kept\n")
        ws.settimeout(20)
        assert ws.recv() == b"kept\n"
        ws.send_binary(b"lost\n\x18")
        _receive_all(ws)  # detached: the socket closes (output after the keys may or may not come first)
        assert api.inspect_container(long)["State"]["Running"]  # and the container runs on
        # the bytes before the keys reached stdin
        wait_for(lambda: api.logs(long) == b"kept\nlost\n", "the bytes before the detach keys in the logs")
    finally:
        api.remove_container(once, force=True)
        api.remove_container(long, force=True)


async def _ws_session(daemon: Caisd, path: str, send: bytes | None = None) -> tuple[list, int | None]:
    """Connect with aiohttp over the unix socket; (messages as (type, data), close code)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.sock)) as session, \
            session.ws_connect(f"http://localhost{path}", timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
        if send is not None:
            await ws.send_bytes(send)
        got = []
        async with asyncio.timeout(20):
            async for message in ws:
                got.append((message.type, message.data))
        return got, ws.close_code


def test_aiohttp_websocket_versions(daemon: Caisd) -> None:
    cid = daemon.docker("create", "busybox", "sh", "-c", "echo out; echo err >&2").stdout.decode().strip()
    try:
        daemon.docker("start", "-a", cid)
        # current API: only the chosen streams, binary frames
        got, code = asyncio.run(_ws_session(daemon, f"/v1.50/containers/{cid}/attach/ws?logs=1&stderr=1"))
        assert got == [(aiohttp.WSMsgType.BINARY, b"err\n")] and code == 1000
        # before 1.42 every stream is attached whatever the flags; before 1.28 text frames
        got, _ = asyncio.run(_ws_session(daemon, f"/v1.27/containers/{cid}/attach/ws?logs=1&stderr=1"))
        assert {t for t, _ in got} == {aiohttp.WSMsgType.TEXT} and "".join(d for _, d in got) in ("out\nerr\n",
                                                                                                 "err\nout\n")
    finally:
        daemon.docker("rm", "-f", cid)


def test_aiohttp_websocket_live_stream(daemon: Caisd) -> None:
    cid = daemon.docker("run", "-d", "-i", "busybox", "sh", "-c",
                        "read x; for i in 1 2 3; do echo $x$i; sleep 0.1; done").stdout.decode().strip()
    try:
        got, code = asyncio.run(_ws_session(daemon, f"/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1",
                                            send=b"n\n"))
        assert b"".join(d for _, d in got) == b"n1\nn2\nn3\n" and code == 1000
    finally:
        daemon.docker("rm", "-f", cid)


def test_websocket_errors(daemon: Caisd) -> None:
    async def handshake(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.sock)) as session:
            try:
                async with session.ws_connect(f"http://localhost{path}"):
                    return 101, ""
            except aiohttp.WSServerHandshakeError as e:
                return e.status, e.message
    assert asyncio.run(handshake("/containers/cais-en-nonesuch/attach/ws?stream=1"))[0] == 404
    cid = daemon.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        assert asyncio.run(handshake(f"/containers/{cid}/attach/ws?stdout=1"))[0] == 400
        assert asyncio.run(handshake(f"/containers/{cid}/attach/ws?stream=1&detachKeys=ctrl-foo"))[0] == 400
        # plain HTTP, no upgrade: a clear 400 from aiohttp's handshake, the daemon stays up
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(daemon.sock)
            s.sendall(f"GET /containers/{cid}/attach/ws?stream=1 HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 400")
        assert daemon.ping()
    finally:
        daemon.docker("rm", "-f", cid)


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_big_log_is_streamed_not_held(daemon: Caisd) -> None:
    """logs=1 over a ~200 MB log: caisd sends it a batch at a time; its RSS does not grow by the log's size."""
    line_size, lines = 8000, 25_000
    cid = daemon.docker("run", "-d", "busybox", "sh", "-c",
                        f"yes $(head -c {line_size - 1} /dev/zero | tr '\\0' a) | head -n {lines}").stdout.decode().strip()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        assert daemon.docker("wait", cid, timeout=120).stdout.strip() == b"0"
        before = peak = _rss(pid)

        async def consume() -> tuple[int, int]:
            nonlocal peak
            count = size = 0
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.sock)) as session, \
                    session.ws_connect(f"http://localhost/containers/{cid}/attach/ws?logs=1&stdout=1",
                                       max_msg_size=1 << 20) as ws:
                async with asyncio.timeout(120):
                    async for message in ws:
                        count, size = count + 1, size + len(message.data)
                        if count % 500 == 0:
                            peak = max(peak, _rss(pid))
                            await asyncio.sleep(0.001)  # a slowish client: the daemon must wait, not buffer
            return count, size

        threads = _threads(pid)
        count, size = asyncio.run(consume())
        assert (count, size) == (lines, lines * line_size)
        assert peak - before < 64 << 20, f"caisd's RSS grew by {(peak - before) >> 20} MiB"

        async def leave_early() -> None:  # a client that hangs up after a few messages
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.sock)) as session, \
                    session.ws_connect(f"http://localhost/containers/{cid}/attach/ws?logs=1&stdout=1",
                                       max_msg_size=1 << 20) as ws:
                for _ in range(3):
                    await ws.receive()
        for _ in range(3):
            asyncio.run(leave_early())
        wait_for(lambda: _threads(pid) <= threads, "the log readers to end with their clients")
        assert daemon.ping()
    finally:
        daemon.docker("rm", "-f", cid)
