"""Exec output reaches a client that ends its stdin late, after the process exited, and reads after that."""

from __future__ import annotations

import json
import socket
import time

from tests.caisd import Caisd
from tests.wait import wait_for


def _request(d: Caisd, path: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.sock)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def _stdout_of_exec(d: Caisd, cid: str, cmd: list[str], pause: float, during=None) -> bytes:  # type: ignore[no-untyped-def]
    """Start an exec hijacked; after `pause` s without reading, half-close (no stdin); then read it
    all. `during(exec_id)` is called before reading."""
    exec_id = _request(d, f"/v1.47/containers/{cid}/exec", {"Cmd": cmd, "AttachStdout": True})["Id"]
    body = b'{"Detach": false, "Tty": false}'
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.sock)
        s.sendall(f"POST /v1.47/exec/{exec_id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(1)
        assert got.startswith(b"HTTP/1.1 101")
        time.sleep(pause)  # the process writes, exits and is reaped meanwhile: its output waits in buffers
        s.shutdown(socket.SHUT_WR)  # stdin is done (the docker CLI says so right after the upgrade)
        time.sleep(pause)
        if during is not None:
            during(exec_id)
        got = bytearray()
        while chunk := s.recv(1 << 20):
            got += chunk
    out = bytearray()
    at = 0
    while at < len(got):
        assert got[at] == 1, got[at:at + 8]
        length = int.from_bytes(got[at + 4:at + 8], "big")
        out += got[at + 8:at + 8 + length]
        at += 8 + length
    return bytes(out)


def test_exec_output_is_complete_when_stdin_ends_before_it_is_read(daemon: Caisd) -> None:
    """The supervisor closed the exec's connection when the process ended, while the end of stdin
    was on its way: caisd's write failed or the connection was reset, and caisd dropped the output
    it had not relayed yet (`docker exec` printed part of it under load)."""
    cid = daemon.docker("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    try:
        size = 3 << 20
        for pause in (0.0, 0.5):
            out = _stdout_of_exec(daemon, cid, ["head", "-c", str(size), "/dev/zero"], pause)
            assert len(out) == size, f"pause {pause}: {len(out)} of {size} bytes"
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_a_client_that_reads_late_gets_all_of_a_large_output(daemon: Caisd) -> None:
    """A client that stops reading holds the process up (docker's behaviour: the output pipe fills),
    it never loses output: the supervisor once dropped a subscriber with 8 MB unsent."""
    cid = daemon.docker("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    try:
        size = 40 << 20
        out = _stdout_of_exec(daemon, cid, ["head", "-c", str(size), "/dev/zero"], 1.5)
        assert len(out) == size, f"{len(out)} of {size} bytes"
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_the_exit_is_reported_while_a_slow_client_still_reads_a_daemonized_childs_output(daemon: Caisd) -> None:
    """The process exits, a child it left keeps writing to a client that does not read: the exit is
    reported after the drain grace (as dockerd), and the client still gets the whole output."""
    cid = daemon.docker("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    size = 16 << 20
    seen = {}

    def inspected(exec_id: str) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(daemon.sock)
            s.sendall(f"GET /v1.47/exec/{exec_id}/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        seen.update(json.loads(reply.partition(b"\r\n\r\n")[2]))
        return not seen["Running"]

    def exited(exec_id: str) -> None:  # while the client has read nothing yet
        wait_for(lambda: inspected(exec_id), "the exec's exit, reported after the drain grace")

    try:
        out = _stdout_of_exec(daemon, cid, ["sh", "-c", f"head -c {size} /dev/zero & exit 3"], 1.6, exited)
        assert (seen["Running"], seen["ExitCode"]) == (False, 3)
        assert len(out) == size, f"{len(out)} of {size} bytes"
    finally:
        daemon.docker("rm", "-f", cid, check=False)
