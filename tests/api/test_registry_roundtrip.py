"""docker push / pull through caisd, to and from a registry on loopback (cais's own registry server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from tests.caisd import Caisd
from tests.ports import free_port


def test_push_rmi_pull_run(daemon: Caisd) -> None:
    root = tempfile.mkdtemp(prefix="cais-en-reg-", dir="/tmp")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cais.registry.server", "--addr", f"127.0.0.1:{port}",
                               "--root", root, "--log-level", "error"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    ref = f"127.0.0.1:{port}/cais-en/bb:1"
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        daemon.docker("tag", "busybox", ref)
        pushed = daemon.docker("push", ref, timeout=120)
        assert b"digest: sha256:" in pushed.stdout
        daemon.docker("rmi", ref)
        pulled = daemon.docker("pull", ref, timeout=120)
        assert b"Digest: sha256:" in pulled.stdout
        assert daemon.docker("run", "--rm", ref, "echo", "pulled").stdout == b"pulled\n"
        missing = daemon.docker("pull", f"127.0.0.1:{port}/cais-en/none:1", check=False, timeout=120)
        assert missing.returncode != 0 and missing.stderr.strip()
    finally:
        daemon.docker("rmi", ref, check=False)
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)
        assert os.path.exists(daemon.sock)
