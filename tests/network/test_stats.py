"""Network counters in `stats`: the API's `networks`, the NET I/O column of `docker stats` and
`cais stats`, for a container on the bridge that receives traffic the test sends it — all inside
a sandbox network namespace (caisd and its containers included)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import docker
import pytest

from tests.caisd import Caisd, caisd
from tests.network.conftest import sandboxed

pytestmark = pytest.mark.peers

SENT = 300_000
UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


@pytest.fixture(scope="module")
def d() -> Iterator[Caisd]:
    with sandboxed(), caisd(network_args=[]) as daemon:  # the default bridge
        yield daemon


def _bytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(B|kB|MB|GB)", text.strip())
    assert m, text
    return float(m.group(1)) * UNITS[m.group(2)]


def _send(address: str, port: int, size: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((address, port), timeout=30) as s:
                s.sendall(b"q" * size)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)  # the listener closing: everything arrived
            return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"{address}:{port} never listened"
            time.sleep(0.05)  # nc not listening yet


def test_network_counters(d: Caisd) -> None:
    try:
        cid = d.docker("run", "-d", "--name", "sink", "busybox", "sh", "-c",
                       "while :; do nc -l -p 9000 >/dev/null; done").stdout.decode().strip()
        loner = d.docker("run", "-d", "--name", "loner", "--network", "none", "busybox", "sleep", "60")
        assert loner.returncode == 0
        address = json.loads(d.docker("inspect", "sink").stdout)[0]["NetworkSettings"]["IPAddress"]
        before = json.loads(d.docker("stats", "--no-stream", "--format", "{{json .}}", "sink").stdout)
        _send(address, 9000, SENT)

        client = docker.DockerClient(base_url=d.host, timeout=60)
        try:
            sample = client.api.stats(cid, stream=False, one_shot=True)
            eth0 = sample["networks"]["eth0"]
            assert set(eth0) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets",
                                 "tx_errors", "tx_dropped"}
            assert list(sample["networks"]) == ["eth0"]  # no loopback
            assert eth0["rx_bytes"] >= SENT and eth0["rx_packets"] >= SENT // 65536
            assert 0 < eth0["tx_bytes"] < SENT and eth0["tx_packets"] > 0  # the acknowledgements
            assert eth0["rx_errors"] == eth0["tx_errors"] == 0
            assert "networks" not in client.api.stats("loner", stream=False, one_shot=True)
        finally:
            client.close()

        rx, tx = before["NetIO"].split(" / ")
        assert _bytes(rx) < SENT
        for tool in (d.docker, d.cais):
            row = tool("stats", "--no-stream", "--format", "{{.Name}} {{.NetIO}}", "sink", "loner").stdout.decode()
            sink, loner_row = row.splitlines()
            name, rx, _, tx = sink.split()
            assert name == "sink" and _bytes(rx) >= SENT and 0 < _bytes(tx) < SENT, row
            assert loner_row == "loner 0B / 0B"
        table = d.cais("stats", "--no-stream", "sink").stdout.decode().splitlines()
        assert "NET I/O" in table[0] and re.search(r"\d+(\.\d+)?kB / \d", table[1]), table
    finally:
        d.docker("rm", "-f", "sink", "loner", check=False)
