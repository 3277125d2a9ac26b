"""caisd's side of the supervisor: start it when absent, send requests, open streams."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time

from cais.engine import build
from cais.engine.errors import EngineError

log = logging.getLogger("cais.engine")


class SupervisorError(EngineError):
    pass


class SupervisorClient:
    def __init__(self, exec_root: str) -> None:
        self.exec_root = exec_root
        self.path = os.path.join(exec_root, "supervisor.sock")
        self.mismatch: str | None = None  # why the running supervisor is not of our build, if it is not
        self.protocol = build.PROTOCOL  # the running supervisor's

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
        """Connect, or start a supervisor (in its own session, so it outlives whoever started it).

        A supervisor of another build (cais was upgraded since it started) is replaced when it
        supervises nothing; with processes it is kept if it speaks our protocol (`mismatch` says
        why), and refused otherwise. Its containers are never stopped for an upgrade.
        """
        try:
            reply = self.request({"op": "list"})
        except OSError:
            reply = None
        if reply is not None and self._keep(reply):
            return
        self._spawn()

    def _keep(self, reply: dict) -> bool:
        theirs, ours = reply.get("build"), _our_build()
        self.protocol = (theirs or {}).get("protocol", 1)
        if theirs == ours:
            self.mismatch = None
            return True
        pid = reply.get("pid")
        if not reply.get("procs") and self._replace_idle(pid):
            self.mismatch = None
            log.info("replaced the idle supervisor (pid %s, %s) by one running %s", pid,
                     build.describe(theirs), build.describe(ours))
            return False
        self.mismatch = (f"the supervisor (pid {pid}) runs {build.describe(theirs)}, older code than this "
                         f"{build.describe(ours)}; it is kept for its {len(reply.get('procs') or {})} running "
                         "processes and replaced once they have stopped")
        if self.protocol not in build.SPOKEN:
            raise SupervisorError(f"{self.mismatch} — but its protocol is not ours: run the previous cais "
                                  "until its containers have stopped, or stop them")
        log.warning("%s", self.mismatch)
        return True

    def _replace_idle(self, pid: int | None) -> bool:
        """Ask an idle supervisor to exit, and wait until its lock is free."""
        try:
            self.request({"op": "shutdown", "if_idle": True}, timeout=10)
        except (OSError, SupervisorError):
            return False  # it took a process meanwhile, or is gone: ensure_running sorts it out
        lock = os.open(os.path.join(self.exec_root, "supervisor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    time.sleep(0.02)
            raise SupervisorError(f"the idle supervisor (pid {pid}) did not exit when asked to")
        finally:
            os.close(lock)

    def _spawn(self) -> None:
        os.makedirs(self.exec_root, mode=0o700, exist_ok=True)
        logf = open(os.path.join(self.exec_root, "supervisor.log"), "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "cais.engine.supervisor", "--exec-root", self.exec_root],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf,
                                start_new_session=True, close_fds=True)
        logf.close()
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        # ours, or another one that won the race for the lock: which protocol it speaks, either way
        deadline = time.monotonic() + (5 if line.strip() != b"ready" else 0)
        while True:
            try:
                reply = self.request({"op": "list"})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SupervisorError(f"the supervisor did not start (see {self.exec_root}/supervisor.log)") \
                        from None
                time.sleep(0.05)
        self.protocol = (reply.get("build") or {}).get("protocol", 1)

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

    def send(self, sock: socket.socket, request: dict) -> dict:
        """One more request on a connection that `stream` opened (`create` then `start`)."""
        return self._send(sock, request)

    def _send(self, sock: socket.socket, request: dict) -> dict:
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):  # what follows the line belongs to the stream: peek, then take the line
            chunk = sock.recv(65536, socket.MSG_PEEK)
            if not chunk:
                raise SupervisorError("the supervisor closed the connection")
            end = chunk.find(b"\n")
            line += sock.recv(end + 1 if end >= 0 else len(chunk))
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


@functools.cache
def _our_build() -> dict:
    return build.identity()
