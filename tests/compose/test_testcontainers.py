"""Testcontainers (Python) drives caisd unchanged.

Ryuk, Testcontainers' reaper container, is disabled (TESTCONTAINERS_RYUK_DISABLED=true): its
image (testcontainers/ryuk) would come from Docker Hub, and these tests never leave the machine;
every container is removed by the context managers instead.
"""

from __future__ import annotations

import pathlib
import re
import urllib.request
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd

pytestmark = pytest.mark.peers

WEB = "mkdir -p /www && echo hello $GREETING > /www/index.html && echo server ready && exec httpd -f -p 80 -h /www"


@pytest.fixture
def tc(d: Caisd, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pytest.importorskip("testcontainers")
    from testcontainers.core.config import testcontainers_config

    monkeypatch.setenv("DOCKER_HOST", d.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    yield
    left = d.docker("ps", "-aq", "--filter", "label=org.testcontainers=true").stdout.split()
    assert not left, "a Testcontainers container outlived its context manager"


def test_docker_container(d: Caisd, tc: None, tmp_path: pathlib.Path) -> None:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    from testcontainers.core.waiting_utils import wait_for_logs

    (tmp_path / "in.txt").write_text("bound\n")
    container = (DockerContainer("busybox").with_command(["sh", "-c", WEB]).with_exposed_ports(80)
                 .with_env("GREETING", "testcontainers").with_name("cais-co-tc")
                 .with_volume_mapping(str(tmp_path), "/mnt", "ro"))
    with container:
        wait_for_logs(container, LogMessageWaitStrategy(re.compile(r"server ready")).with_startup_timeout(30))
        host, port = container.get_container_host_ip(), container.get_exposed_port(80)
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as r:
            assert r.read() == b"hello testcontainers\n"
        result = container.exec(["sh", "-c", "cat /mnt/in.txt; echo $GREETING; exit 5"])
        assert result.exit_code == 5 and result.output == b"bound\ntestcontainers\n"
        stdout, stderr = container.get_logs()
        assert stdout == b"server ready\n" and stderr == b""
        info = container.get_container_info()
        assert info is not None and info.Name == "/cais-co-tc" and info.State is not None and info.State.Running
        assert info.NetworkSettings is not None and info.Config is not None and info.HostConfig is not None
        assert container.status == "running"
        labels = container.get_wrapped_container().labels
        assert labels["org.testcontainers"] == "true" and "org.testcontainers.session-id" in labels
        # files in and out (PUT/GET /containers/{id}/archive)
        container.copy_into_container(b"copied in\n", "/tmp/copied.txt")
        container.copy_from_container("/tmp/copied.txt", tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == "copied in\n"
    assert not d.docker("ps", "-aq", "--filter", "name=cais-co-tc").stdout.strip()


def test_network_and_exit_code(d: Caisd, tc: None) -> None:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    with Network() as network:
        server = (DockerContainer("busybox").with_command(["sh", "-c", WEB]).with_env("GREETING", "peer")
                  .with_network(network).with_network_aliases("cais-co-srv")
                  .waiting_for(LogMessageWaitStrategy("server ready")))
        with server:
            client = DockerContainer("busybox").with_network(network).with_command(
                ["sh", "-c", "wget -qO- http://cais-co-srv/ && exit 9"])
            with client:
                assert client.wait() == 9
                assert client.get_logs()[0] == b"hello peer\n"
    assert network.name not in d.docker("network", "ls", "--format", "{{.Name}}").stdout.decode()
