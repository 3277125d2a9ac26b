"""Real peers for the tests: a private dockerd on its own data root and socket.

It never touches the host's network: no bridge, no iptables, no ip forwarding changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO


@dataclass
class Dockerd:
    root: str
    sock: str
    host: str  # for `docker -H` and DOCKER_HOST

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """Run the docker client against this daemon."""
        return subprocess.run(["docker", "-H", self.host, *args], check=check, capture_output=True,
                              input=input, timeout=timeout)


@contextmanager
def dockerd(runtimes: dict[str, str] | None = None, extra: list[str] | None = None) -> Iterator[Dockerd]:
    """Start Debian's dockerd on a temporary root (`extra`: more flags); stop it and remove
    everything afterwards."""
    if shutil.which("dockerd") is None:
        import pytest
        pytest.skip("dockerd is not installed (Debian package docker.io)")
    # Short path: unix socket paths are limited to 108 bytes.
    root = tempfile.mkdtemp(prefix="cais-dockerd-", dir="/tmp")
    sock = os.path.join(root, "d.sock")
    if "--userns-remap" in (extra or []):
        os.chmod(root, 0o711)  # dockerd wants the remapped root to reach its data root
    args = ["dockerd", "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
            "--pidfile", os.path.join(root, "dockerd.pid"), "-H", f"unix://{sock}",
            "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--userland-proxy=false", "--storage-driver=overlay2", "--log-level=warn"]
    for name, path in (runtimes or {}).items():
        args += ["--add-runtime", f"{name}={path}"]
    args += extra or []
    log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = Dockerd(root, sock, f"unix://{sock}")
    try:
        deadline = time.monotonic() + 60

        def answers() -> bool:
            try:
                return handle.docker("version", check=False, timeout=30).returncode == 0
            except subprocess.TimeoutExpired:  # up, but busy starting
                return False

        while not answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(root, "dockerd.log")) as f:
                    raise RuntimeError(f"dockerd did not start:\n{f.read()[-3000:]}")
            time.sleep(0.2)
        yield handle
    finally:
        remove_containers(handle)
        stop_daemon(proc, log, root, timeout=30)


def remove_containers(d: Dockerd) -> None:
    """`docker rm -f` every container of `d` (before stopping it)."""
    ids = d.docker("ps", "-aq", check=False, timeout=30).stdout.split()
    if ids:
        d.docker("rm", "-f", *[i.decode() for i in ids], check=False, timeout=60)


def stop_daemon(proc: subprocess.Popen[bytes], log: IO[bytes], root: str, timeout: float) -> None:
    """Stop a peer daemon started in a session of its own with its files under `root`: SIGTERM,
    SIGKILL to its session after `timeout` seconds, then unmount and remove what it left."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
    _unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def _unmount_under(root: str) -> None:
    """Lazily unmount whatever a peer left mounted under `root` (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
