"""Network tests run in a sandbox: a fresh network namespace that plays "the host".

The test's main thread setns()es into it, so every bridge, veth, nft table, sysctl, socket and
subprocess of the test (threads and children inherit the namespace) lives there; the real host's
interfaces, routes and firewall are never touched. Deleting the namespace at the end takes all
of it away, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from cais.linux.namespaces import CLONE_NEWNET, setns
from cais.network import etcfiles, netns
from cais.network.manager import NetworkManager
from tests.runtime.bundle import Runtime


@contextlib.contextmanager
def sandboxed(prefix: str = "cais-nt") -> Iterator[str]:
    """The calling thread moved into a fresh network namespace (with lo up) for the block."""
    top = tempfile.mkdtemp(prefix=f"{prefix}-{uuid.uuid4().hex[:6]}-")
    path = os.path.join(top, "host")
    netns.create(path)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
        os.close(fd)
        netns.loopback_up()
        yield top
    finally:
        setns(here, CLONE_NEWNET)
        os.close(here)
        netns.remove(path)
        shutil.rmtree(top, ignore_errors=True)


def http_get(url: str, wait: float = 60) -> str:
    """The body at `url`, retried every 0.1 s for `wait` s while it cannot be reached (a server still
    starting; 0: one try)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read().decode()
        except OSError as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{url} unreachable: {e}") from None
            time.sleep(0.1)


@pytest.fixture
def sandbox() -> Iterator[str]:
    with sandboxed() as top:
        yield top


class UpstreamDns:
    """A tiny resolver on 127.0.0.1 in the sandbox: NAME -> ADDRESS, NXDOMAIN otherwise."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from cais.network.dns import _question, answer

        while True:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            q = _question(packet)
            if q is None:
                continue
            name, qtype, end = q
            if name in self.records:
                self.sock.sendto(answer(packet, end, qtype, [self.records[name]]), peer)
            else:
                self.sock.sendto(packet[:2] + struct.pack("!H", 0x8183) + packet[4:6] + b"\0" * 6 + packet[12:end],
                                 peer)

    def close(self) -> None:
        self.sock.close()


class Lab:
    """A NetworkManager in the sandbox plus busybox containers run by cais-runtime."""

    def __init__(self, top: str, rt: Runtime) -> None:
        self.top = top
        self.rt = rt
        self.upstream = UpstreamDns({"upstream.cais.test": "192.0.2.7"})
        self.manager = NetworkManager(os.path.join(top, "data"), os.path.join(top, "run"),
                                      upstream_dns=[self.upstream.address])
        self.manager.start(alive=set())
        self.running: list[str] = []

    def sandbox(self, name: str) -> str:
        return self.manager.create_sandbox(name)

    def bundle(self, netns_path: str | None, *args: str, hostname: str = "c"):  # noqa: ANN201
        b = self.rt.bundle(*args)
        ns = [n for n in b.config["linux"]["namespaces"] if n["type"] != "network"]
        if netns_path is not None:
            ns.append({"type": "network", "path": netns_path})
        b.config["linux"]["namespaces"] = ns
        b.config["hostname"] = hostname
        with open(os.path.join(b.rootfs, "etc", "resolv.conf"), "w") as f:
            f.write(etcfiles.resolv_conf("", embedded=True))
        os.makedirs(os.path.join(b.rootfs, "www"), exist_ok=True)
        with open(os.path.join(b.rootfs, "www", "index.html"), "w") as f:
            f.write(f"hello from {hostname}\n")
        return b

    def serve(self, netns_path: str, hostname: str, *args: str) -> str:
        """A detached container running `args` (default: busybox httpd on port 80)."""
        b = self.bundle(netns_path, *(args or ("httpd", "-f", "-p", "80", "-h", "/www")), hostname=hostname)
        cid = self.rt.create(b)
        self.rt("start", cid, check=True)
        self.running.append(cid)
        return cid

    @staticmethod
    def wait_tcp(ip: str, port: int = 80) -> None:
        """Until a server in a container accepts connections (from the sandbox host's side)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((ip, port), timeout=5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def fetch(self, netns_path: str, url: str, seconds: int = 5) -> subprocess.CompletedProcess[str]:
        """busybox wget in a new container; `|| exit` keeps sh as PID 1, so timeout's SIGTERM works."""
        return self.run(netns_path, "sh", "-c", f"timeout {seconds} wget -O - {url} || exit 1")

    def run(self, netns_path: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        return self.rt.run(self.bundle(netns_path, *args))

    def close(self) -> None:
        try:
            self.rt.cleanup()
        finally:
            self.manager.shutdown()
            for entry in os.listdir(self.manager.netns_dir):
                netns.remove(os.path.join(self.manager.netns_dir, entry))
            self.upstream.close()


@pytest.fixture
def lab(sandbox: str, busybox_dir: str) -> Iterator[Lab]:
    lab = Lab(sandbox, Runtime(busybox_dir))
    try:
        yield lab
    finally:
        lab.close()
