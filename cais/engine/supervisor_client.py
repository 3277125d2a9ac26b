"""caisd's side of the supervisor: start it when absent, send requests, open streams."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from cais.engine.errors import EngineError


class SupervisorError(EngineError):
    pass


class SupervisorClient:
    def __init__(self, exec_root: str) -> None:
        self.exec_root = exec_root
        self.path = os.path.join(exec_root, "supervisor.sock")

    def connect(self, timeout: float | None = 30) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock

    def ensure_running(self) -> None:
        """Connect, or start a supervisor (in its own session, so it outlives whoever started it)."""
        with contextlib.suppress(OSError):
            self.request({"op": "list"})
            return
        os.makedirs(self.exec_root, mode=0o700, exist_ok=True)
        log = open(os.path.join(self.exec_root, "supervisor.log"), "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "cais.engine.supervisor", "--exec-root", self.exec_root],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True, close_fds=True)
        log.close()
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if line.strip() != b"ready":
            # another one may have won the race for the lock
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    self.request({"op": "list"})
                    return
                time.sleep(0.05)
            raise SupervisorError(f"the supervisor did not start (see {self.exec_root}/supervisor.log)")

    def request(self, request: dict, timeout: float = 60) -> dict:
        with self.connect(timeout) as sock:
            reply = self._send(sock, request)
        return reply

    def stream(self, request: dict) -> tuple[socket.socket, dict]:
        """Send a request whose connection then carries frames; return the socket and the reply."""
        sock = self.connect(60)
        try:
            reply = self._send(sock, request)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock, reply

    def _send(self, sock: socket.socket, request: dict) -> dict:
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                raise SupervisorError("the supervisor closed the connection")
            line += chunk
        reply = json.loads(line)
        if "error" in reply:
            raise SupervisorError(reply["error"])
        return reply

    def pid(self) -> int | None:
        try:
            with open(os.path.join(self.exec_root, "supervisor.lock")) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None
