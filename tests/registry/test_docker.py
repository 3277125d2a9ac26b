"""dockerd as the other side: it pushes and pulls against the distribution registry and cais's server."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import pytest

from cais.image.content import ContentStore
from cais.image.manifest import DOCKER_MANIFEST, parse_manifest
from cais.image.reference import parse
from cais.registry.pull import pull
from cais.registry.push import push
from tests.peers import Dockerd, dockerd
from tests.registry.conftest import PASSWORD, USER, Layout, RunningRegistry, skopeo
from tests.registry.images import tar_directory, tar_files, write_oci_layout

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def docker() -> Iterator[Dockerd]:
    with dockerd() as d:
        yield d


@pytest.fixture(scope="module")
def rootfs_tar(busybox_dir: str) -> bytes:
    return tar_directory(busybox_dir)


def _docker(d: Dockerd, *args: str, config: str | None = None) -> str:
    cmd = ["docker", "-H", d.host, *(["--config", config] if config else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _import(d: Dockerd, rootfs_tar: bytes, name: str) -> None:
    d.docker("import", "--change", 'CMD ["sh"]', "-", name, input=rootfs_tar)


def test_cais_pulls_what_dockerd_pushed(docker: Dockerd, distribution: RunningRegistry, rootfs_tar: bytes,
                                        tmp_root: str) -> None:
    name = f"{distribution.host}/cais/from-docker:v1"
    _import(docker, rootfs_tar, name)
    _docker(docker, "push", name)
    store = ContentStore(tmp_root)
    result = asyncio.run(pull(parse(name), store, hosts=distribution.hosts()))
    assert result.media_type == DOCKER_MANIFEST
    manifest = parse_manifest(store.read(result.manifest_digest))
    assert all(store.verify(d.digest) for d in (manifest.config, *manifest.layers))
    pushed = _docker(docker, "inspect", "--format", "{{index .RepoDigests 0}}", name).strip()
    assert pushed.endswith(result.digest)


def test_docker_runs_what_cais_pushed(docker: Dockerd, distribution: RunningRegistry, busybox_layout: Layout,
                                      tmp_root: str) -> None:
    source = f"{distribution.host}/cais/docker-src:latest"
    skopeo("copy", *distribution.skopeo_args("dest"), busybox_layout.ref(), f"docker://{source}")
    store = ContentStore(tmp_root)
    result = asyncio.run(pull(parse(source), store, hosts=distribution.hosts()))
    target = f"{distribution.host}/cais/for-docker:v2"
    asyncio.run(push(parse(target), store, result.manifest_digest, hosts=distribution.hosts(), chunk_size=1 << 20))
    _docker(docker, "pull", target)
    assert _docker(docker, "run", "--rm", "--network", "none", target, "cat", "/etc/cais") == "quay\n"


@pytest.mark.parametrize("which", ["cais_server", "cais_server_auth"])
def test_docker_push_pull_against_cais_server(which: str, request: pytest.FixtureRequest, docker: Dockerd,
                                              rootfs_tar: bytes, tmp_root: str) -> None:
    reg: RunningRegistry = request.getfixturevalue(which)
    config = os.path.join(tmp_root, "docker-config")
    if reg.auth:
        subprocess.run(["docker", "-H", docker.host, "--config", config, "login", "-u", USER,
                        "--password-stdin", reg.host], input=PASSWORD, text=True, check=True,
                       capture_output=True, timeout=60)
    name = f"{reg.host}/cais/docker:{which}"
    _import(docker, rootfs_tar, name)
    _docker(docker, "push", name, config=config)
    _docker(docker, "rmi", name)
    _docker(docker, "pull", name, config=config)
    assert _docker(docker, "run", "--rm", "--network", "none", name, "echo", "ok") == "ok\n"
    # and cais's own client reads what docker pushed
    result = asyncio.run(pull(parse(name), ContentStore(os.path.join(tmp_root, "store")), hosts=reg.hosts(),
                              credentials=reg.credentials))
    assert result.media_type == DOCKER_MANIFEST


def test_json_progress_matches_dockerd(docker: Dockerd, distribution: RunningRegistry, tmp_root: str) -> None:
    """The JSON stream cais renders has the shape, ids and wording of dockerd's for the same pull."""
    import json

    import docker as docker_py

    from cais.registry.progress import JSONProgress
    name = f"{distribution.host}/cais/progress"
    layout = os.path.join(tmp_root, "layout")  # layers dockerd has not seen yet, or it reports none
    write_oci_layout(layout, [tar_files({"a": os.urandom(3 << 20)}), tar_files({"b": os.urandom(1 << 20)})])
    skopeo("copy", *distribution.skopeo_args("dest"), f"oci:{layout}:latest", f"docker://{name}:v1")
    api = docker_py.APIClient(base_url=docker.host, version="auto")
    try:
        theirs = list(api.pull(name, tag="v1", stream=True, decode=True))
    finally:
        api.close()
    lines: list[bytes] = []
    asyncio.run(pull(parse(f"{name}:v1"), ContentStore(os.path.join(tmp_root, "store")), hosts=distribution.hosts(),
                     progress=JSONProgress(lines.append)))
    ours = [json.loads(line) for line in lines]

    def layer_statuses(messages: list[dict]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for m in messages:
            if m.get("id") and m["id"] != "v1":
                found.setdefault(m["id"], set()).add(m["status"])
        return found
    ours_by_layer, theirs_by_layer = layer_statuses(ours), layer_statuses(theirs)
    assert ours_by_layer.keys() == theirs_by_layer.keys()  # the same 12-digit layer ids
    for layer, statuses in ours_by_layer.items():
        assert statuses <= theirs_by_layer[layer] | {"Downloading"}, (statuses, theirs_by_layer[layer])
    assert ours[0] == theirs[0] == {"status": "Pulling from cais/progress", "id": "v1"}
    assert any(m["status"].startswith("Digest: sha256:") for m in ours)
    downloading = [m for m in ours if m["status"] == "Downloading"]
    assert downloading and set(downloading[0]) == {"status", "progressDetail", "progress", "id"}
