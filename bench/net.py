"""Benchmark: networking of cais vs dockerd 20.10, both inside a sandbox network namespace.

Each engine runs busybox httpd serving a 64 MiB file in a container with `-p PORT:80`, plus a
client container on the same user-defined network. Measured:
- connection rate: sequential HTTP/1.0 GETs of a tiny page from the sandbox host to 127.0.0.1:PORT
  (a new TCP connection each, through the DNAT of the published port);
- throughput to the published port: the 64 MiB file fetched from 127.0.0.1:PORT;
- container to container: the client container fetches the file 8 times from the server by name
  through the bridge, timed inside the container (busybox `time`).
dockerd runs with its bridge, iptables and `--userland-proxy=false` (kernel DNAT like cais) in
the sandbox; nothing of either engine touches the real host's network.

    .venv/bin/python bench/net.py [--runs N]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import caisd  # noqa: E402
from tests.network.conftest import sandboxed  # noqa: E402
from tests.peers import Dockerd, remove_containers, stop_daemon  # noqa: E402

PORT = 18090
SERVER = ("mkdir -p /www && echo ok > /www/small && dd if=/dev/zero of=/www/big bs=1M count=64 2>/dev/null "
          "&& exec httpd -f -p 80 -h /www")


@contextmanager
def bridged_dockerd() -> Iterator[Dockerd]:
    """dockerd with its default bridge and iptables rules; run inside the sandbox only."""
    root = tempfile.mkdtemp(prefix="cais-nt-dockerd-", dir="/tmp")
    sock = os.path.join(root, "d.sock")
    args = ["dockerd", "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
            "--pidfile", os.path.join(root, "dockerd.pid"), "-H", f"unix://{sock}", "--userland-proxy=false",
            "--storage-driver=overlay2", "--log-level=warn"]
    log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    d = Dockerd(root, sock, f"unix://{sock}")
    try:
        deadline = time.monotonic() + 60
        while d.docker("version", check=False, timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start")
            time.sleep(0.2)
        yield d
    finally:
        remove_containers(d)
        stop_daemon(proc, log, root, timeout=30)


def _get(path: str) -> int:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        total = 0
        while chunk := s.recv(1 << 20):
            total += len(chunk)
    return total


def _wait_up() -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if _get("/small") > 0:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the published port never answered")
        time.sleep(0.1)


def _median(fn: Callable[[], float], runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def measure(docker: Callable[..., subprocess.CompletedProcess[bytes]], runs: int) -> dict[str, float]:
    docker("network", "create", "benchnet")
    docker("run", "-d", "--name", "srv", "--network", "benchnet", "-p", f"{PORT}:80", "busybox", "sh", "-c", SERVER)
    docker("run", "-d", "--name", "cli", "--network", "benchnet", "busybox", "sleep", "600")
    _wait_up()

    def rate() -> float:
        n, start = 300, time.perf_counter()
        for _ in range(n):
            _get("/small")
        return n / (time.perf_counter() - start)

    def published() -> float:
        start = time.perf_counter()
        size = _get("/big")
        return size / (1 << 20) / (time.perf_counter() - start)

    def c2c() -> float:
        loop = "for i in 1 2 3 4 5 6 7 8; do wget -q -O /dev/null http://srv/big; done"
        done = docker("exec", "cli", "time", "-p", "sh", "-c", loop)
        real = next(line for line in done.stderr.decode().splitlines() if line.startswith("real"))
        return 8 * 64 / float(real.split()[1])  # timed inside the container: no exec overhead

    out = {"connections/s to a published port": _median(rate, runs),
           "MiB/s from a published port": _median(published, runs),
           "MiB/s container to container": _median(c2c, runs)}
    docker("rm", "-f", "srv", "cli")
    docker("network", "rm", "benchnet")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    results: dict[str, dict[str, float]] = {}
    with sandboxed():
        with caisd(network_args=["--dns", "127.0.0.1:9"]) as c:
            results["cais"] = measure(lambda *a: c.docker(*a, timeout=120), runs)
            archive = c.docker("save", "busybox").stdout
        with bridged_dockerd() as d:
            d.docker("load", input=io.BytesIO(archive).getvalue())
            results["dockerd"] = measure(lambda *a: d.docker(*a, timeout=120), runs)
    print(f"{'':40} {'cais':>10} {'dockerd':>10} {'cais/dockerd':>13}")
    for key in results["cais"]:
        a, b = results["cais"][key], results["dockerd"][key]
        print(f"{key:40} {a:10.1f} {b:10.1f} {a / b:13.2f}")


if __name__ == "__main__":
    main()
