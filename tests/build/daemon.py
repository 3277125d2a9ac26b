"""A private caisd for the build tests and benchmark, its store holding a busybox image loaded offline."""

from __future__ import annotations

import contextlib
import io
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

from tests.peers import Dockerd, _unmount_under


@contextlib.contextmanager
def caisd(busybox_archive: bytes) -> Iterator[Dockerd]:
    """A private caisd whose store already holds the busybox image docker has (loaded offline)."""
    from cais.image.archive import load
    from cais.image.store import ImageStore
    from cais.storage import open_driver

    root = tempfile.mkdtemp(prefix="cais-build-d-", dir="/tmp")
    data, exec_root, sock = (os.path.join(root, n) for n in ("data", "exec", "d.sock"))
    cgroup_parent = f"/cais-build-{secrets.token_hex(4)}"
    store = ImageStore(os.path.join(data, "image"), open_driver(os.path.join(data, "storage")))
    load(store, io.BytesIO(busybox_archive))
    store.close()
    log = open(os.path.join(root, "caisd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "caisd"), "--data-root", data,
                             "--exec-root", exec_root, "-H", f"unix://{sock}", "--cgroup-parent", cgroup_parent,
                             "--bridge", "none"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _ping(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(root, "caisd.log"), errors="replace") as f:
                    raise RuntimeError(f"caisd did not start:\n{f.read()[-3000:]}")
            time.sleep(0.1)
        yield Dockerd(root, sock, f"unix://{sock}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        with contextlib.suppress(OSError, ValueError), open(os.path.join(exec_root, "supervisor.lock")) as f:
            supervisor = int(f.read().strip())
            os.kill(supervisor, signal.SIGTERM)
            for _ in range(100):
                os.kill(supervisor, 0)
                time.sleep(0.05)
        _unmount_under(root)
        for controller in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", controller, cgroup_parent.strip("/"))
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        shutil.rmtree(root, ignore_errors=True)


def _ping(sock: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
