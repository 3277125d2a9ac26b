"""The endpoints dockerd answers outside a swarm and without plugins, and /distribution/{name}/json,
with the docker CLI and docker-py."""

from __future__ import annotations

import json
import urllib.request

import docker
import pytest

from tests.caisd import Caisd
from tests.registry.conftest import RunningRegistry

NOT_MANAGER = "This node is not a swarm manager."



def _fails(daemon: Caisd, *args: str) -> str:
    done = daemon.docker(*args, check=False)
    assert done.returncode != 0, done.stdout
    err = done.stderr.decode()
    assert "Traceback" not in err
    return err


def test_swarm_endpoints_docker_cli(daemon: Caisd) -> None:
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"], ["swarm", "unlock-key"],
                 ["node", "inspect", "self"], ["service", "ps", "web"], ["service", "logs", "web"]):
        assert NOT_MANAGER in _fails(daemon, *args), args
    assert "This node is not part of a swarm" in _fails(daemon, "swarm", "leave")
    assert "swarm mode is not supported by cais" in _fails(daemon, "swarm", "init")
    assert "swarm mode is not supported by cais" in _fails(daemon, "swarm", "join", "--token", "x", "127.0.0.1:1")
    assert daemon.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout == b"inactive\n"


def test_swarm_endpoints_docker_py(client: docker.DockerClient) -> None:
    assert client.swarm.attrs == {}  # docker-py reads the 503 as "no swarm"
    for call in (client.nodes.list, client.services.list, client.secrets.list, client.configs.list):
        with pytest.raises(docker.errors.APIError) as e:
            call()
        assert e.value.status_code == 503 and NOT_MANAGER in e.value.explanation
    update = client.api._put(client.api._url("/volumes/{0}", "cais-en-vol"), params={"version": 1}, json={})
    assert update.status_code == 503 and "cluster volumes" in update.json()["message"]


def test_plugins(daemon: Caisd, client: docker.DockerClient) -> None:
    assert client.plugins.list() == []
    lines = daemon.docker("plugin", "ls").stdout.decode().splitlines()
    assert lines[0].split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"] and len(lines) == 1
    assert 'plugin "cais-en/none:latest" not found' in _fails(daemon, "plugin", "inspect", "cais-en/none:latest")
    assert "cais-en/none" in _fails(daemon, "plugin", "rm", "cais-en/none")
    assert "cais-en/none" in _fails(daemon, "plugin", "enable", "cais-en/none")
    with pytest.raises(docker.errors.NotFound):
        client.plugins.get("cais-en/none")
    with pytest.raises(docker.errors.APIError) as e:
        client.api.plugin_privileges("localhost:1/cais-en/plugin")
    assert e.value.status_code == 501
    bad = client.api._get(client.api._url("/plugins"), params={"filters": json.dumps({"colour": ["x"]})})
    assert bad.status_code == 400 and "invalid filter 'colour'" in bad.json()["message"]


def test_distribution_inspect(daemon: Caisd, client: docker.DockerClient, pushed_registry: RunningRegistry) -> None:
    port = pushed_registry.host.rpartition(":")[2]
    ref = f"localhost:{port}/cais-en/busybox"
    head = urllib.request.Request(f"http://{pushed_registry.host}/v2/cais-en/busybox/manifests/latest",
                                  method="HEAD", headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                                          "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(head, timeout=10) as answer:  # noqa: S310 - loopback registry
        digest = answer.headers["Docker-Content-Digest"]
    data = client.images.get_registry_data(ref)
    assert data.id == digest
    assert data.has_platform("linux/amd64") and not data.has_platform("linux/s390x")
    assert data.attrs["Descriptor"]["mediaType"] in ("application/vnd.oci.image.manifest.v1+json",
                                                     "application/vnd.docker.distribution.manifest.v2+json")

    # an index naming that manifest twice: the platforms come from the index
    manifest = data.attrs["Descriptor"]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {**manifest, "platform": {"architecture": "amd64", "os": "linux"}},
        {**manifest, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}
    body = json.dumps(index).encode()
    put = urllib.request.Request(f"http://{pushed_registry.host}/v2/cais-en/busybox/manifests/multi", data=body,
                                 method="PUT", headers={"Content-Type": index["mediaType"]})
    urllib.request.urlopen(put, timeout=10).close()  # noqa: S310 - loopback registry
    multi = client.images.get_registry_data(f"{ref}:multi")
    assert multi.attrs["Descriptor"]["mediaType"] == index["mediaType"]
    assert multi.attrs["Descriptor"]["size"] == len(body)
    assert multi.attrs["Platforms"] == [{"architecture": "amd64", "os": "linux"},
                                        {"architecture": "arm64", "os": "linux", "variant": "v8"}]

    with pytest.raises(docker.errors.NotFound):
        client.images.get_registry_data(f"{ref}:cais-en-missing")
    with pytest.raises(docker.errors.APIError) as e:
        client.images.get_registry_data("localhost:1/cais-en/busybox")
    assert e.value.status_code == 500 and "localhost:1" in e.value.explanation
    with pytest.raises(docker.errors.APIError) as e:
        client.images.get_registry_data("Not A Reference")
    assert e.value.status_code == 400


def test_build_prune(daemon: Caisd, client: docker.DockerClient) -> None:
    assert client.api.prune_builds() == {"CachesDeleted": [], "SpaceReclaimed": 0}
    done = daemon.docker("builder", "prune", "-f")
    assert b"Total:\t0B" in done.stdout or b"Total reclaimed space: 0B" in done.stdout, done.stdout
    # containers, networks, images and the build cache (the label spares what other tests made)
    done = daemon.docker("system", "prune", "-f", "--filter", "label=cais-en-prune=none")
    assert b"Total reclaimed space" in done.stdout
    bad = client.api._post(client.api._url("/build/prune"), params={"filters": "{not json"})
    assert bad.status_code == 400


def test_attestations(client: docker.DockerClient) -> None:
    def get(name: str, **params: object) -> tuple[int, str]:
        answer = client.api._get(client.api._url("/images/{0}/attestations", name), params=params)
        return answer.status_code, answer.json()["message"]
    assert get("cais-en/none:latest")[0] == 404
    assert get("busybox", platform="{bad") == (400, "invalid platform: '{bad'")
    assert get("busybox", platform=['{"os": "linux"}'] * 2)[0] == 400
    assert get("busybox") == (501, "the image store does not support attestations")
