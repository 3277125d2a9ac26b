"""A private caisd for the tests: temporary data root, exec root, socket and cgroup parent.

Everything is named cais-en-…; on the way out every container is removed, the daemon and its
supervisor are stopped, and mounts and cgroups left under the temporary names are cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.peers import _unmount_under

VENV_BIN = os.path.dirname(sys.executable)


@dataclass
class Caisd:
    root: str
    sock: str
    cgroup_parent: str
    proc: subprocess.Popen | None = None
    log: str = ""
    env: dict = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)  # more caisd flags
    # no default bridge: tests on the real host never touch its networking (tests/network runs
    # caisd with a bridge inside a sandbox network namespace)
    network_args: list[str] = field(default_factory=lambda: ["--bridge", "none"])

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def data_root(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def exec_root(self) -> str:
        return os.path.join(self.root, "exec")

    def args(self) -> list[str]:
        return [os.path.join(VENV_BIN, "caisd"), "--data-root", self.data_root, "--exec-root", self.exec_root,
                "-H", self.host, "--config-file", os.path.join(self.root, "daemon.json"),
                "--cgroup-parent", self.cgroup_parent, *self.network_args, *self.extra]

    def start(self) -> None:
        logf = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        env, cwd = ({**os.environ, **self.env}, self.root) if self.env else (None, None)  # cwd: no ./cais
        self.proc = subprocess.Popen(self.args(), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env, cwd=cwd)
        logf.close()
        deadline = time.monotonic() + 60
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"caisd did not start:\n{self.read_log()[-3000:]}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.sock)
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def read_log(self) -> str:
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            return f.read()
        return ""

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["docker", "-H", self.host, *args], check=check, capture_output=True, input=input,
                              timeout=timeout)

    def cais(self, *args: str, check: bool = True, input: bytes | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "CAIS_HOST": self.host}
        return subprocess.run([os.path.join(VENV_BIN, "cais"), *args], check=check, capture_output=True,
                              input=input, timeout=timeout, env=env)

    def supervisor_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError), open(os.path.join(self.exec_root, "supervisor.lock")) as f:
            return int(f.read().strip())
        return None


def _stop_supervisor(d: Caisd) -> None:
    pid = d.supervisor_pid()
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _remove_cgroups(parent: str) -> None:
    base = "/sys/fs/cgroup"
    for controller in os.listdir(base):
        top = os.path.join(base, controller, parent.strip("/"))
        if not os.path.isdir(top):
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


@contextlib.contextmanager
def caisd(bootstrap: bool = True, extra: list[str] | None = None,
          network_args: list[str] | None = None, prefix: str = "cais-en") -> Iterator[Caisd]:
    root = tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp")
    d = Caisd(root=root, sock=os.path.join(root, "d.sock"), cgroup_parent=f"/{prefix}-{secrets.token_hex(4)}",
              log=os.path.join(root, "caisd.log"), extra=list(extra or []))
    if network_args is not None:
        d.network_args = network_args
    with open(os.path.join(root, "daemon.json"), "w") as f:
        json.dump({}, f)
    try:
        d.start()
        if bootstrap:
            d.cais("image", "bootstrap", "busybox", timeout=120)
        yield d
    finally:
        with contextlib.suppress(Exception):
            if d.proc is None or d.proc.poll() is not None:
                d.start()
            ids = d.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                d.docker("rm", "-f", *[i.decode() for i in ids], check=False, timeout=60)
        d.kill(signal.SIGTERM)
        _stop_supervisor(d)
        _unmount_under(root)
        _remove_cgroups(d.cgroup_parent)
        shutil.rmtree(root, ignore_errors=True)
