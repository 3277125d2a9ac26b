"""cais's client against the CNCF distribution registry, with skopeo and dockerd as the other side."""

from __future__ import annotations

import asyncio
import json

import pytest

from cais.image.content import ContentStore
from cais.image.manifest import parse_manifest
from cais.image.reference import parse
from cais.registry.client import Registry
from cais.registry.errors import NotFound, Unauthorized
from cais.registry.progress import ProgressEvent
from cais.registry.pull import pull
from cais.registry.push import push
from tests.registry.conftest import Layout, RunningRegistry, skopeo


def _seed(reg: RunningRegistry, layout: Layout, repo: str, tag: str = "latest") -> None:
    skopeo("copy", *reg.skopeo_args("dest"), layout.ref(), f"docker://{reg.host}/{repo}:{tag}")


def _pull(reg: RunningRegistry, ref: str, store: ContentStore, **kw):
    return asyncio.run(pull(parse(ref), store, hosts=reg.hosts(), credentials=reg.credentials, **kw))


@pytest.mark.parametrize("which", ["distribution", "distribution_auth"])
def test_pull_what_skopeo_pushed(which: str, request: pytest.FixtureRequest, busybox_layout: Layout,
                                 tmp_root: str) -> None:
    reg: RunningRegistry = request.getfixturevalue(which)
    _seed(reg, busybox_layout, "cais/pull-src")
    store = ContentStore(tmp_root)
    events: list[ProgressEvent] = []
    result = _pull(reg, f"{reg.host}/cais/pull-src:latest", store, progress=events.append)
    manifest = parse_manifest(store.read(result.manifest_digest))
    for desc in (manifest.config, *manifest.layers):
        assert store.verify(desc.digest)
    assert sorted(result.stored) == sorted([result.manifest_digest, manifest.config.digest,
                                            *(d.digest for d in manifest.layers)])
    assert any(e.status == "Download complete" for e in events)
    # skopeo converts the OCI manifest; whatever it stored, the digest skopeo reports is the one cais pulled
    inspected = json.loads(skopeo("inspect", *reg.skopeo_args(""), f"docker://{reg.host}/cais/pull-src:latest").stdout)
    assert inspected["Digest"] == result.digest
    # again by digest: everything is already there
    events.clear()
    again = _pull(reg, f"{reg.host}/cais/pull-src@{result.digest}", store, progress=events.append)
    assert again.stored == [] and again.manifest_digest == result.manifest_digest
    assert [e.status for e in events if e.id and e.status == "Already exists"]


@pytest.mark.parametrize("chunk_size", [None, 256 << 10])
@pytest.mark.parametrize("which", ["distribution", "distribution_auth"])
def test_push_then_skopeo_pulls(which: str, chunk_size: int | None, request: pytest.FixtureRequest,
                                busybox_layout: Layout, tmp_root: str) -> None:
    reg: RunningRegistry = request.getfixturevalue(which)
    _seed(reg, busybox_layout, "cais/push-src")
    store = ContentStore(f"{tmp_root}/store")
    result = _pull(reg, f"{reg.host}/cais/push-src:latest", store)
    target = f"{reg.host}/cais/pushed-{'chunked' if chunk_size else 'mono'}:v1"
    events: list[ProgressEvent] = []
    digest = asyncio.run(push(parse(target), store, result.manifest_digest, hosts=reg.hosts(),
                              credentials=reg.credentials, progress=events.append, chunk_size=chunk_size))
    assert digest == result.manifest_digest
    assert {e.status for e in events if e.id} >= {"Pushed"}
    inspected = json.loads(skopeo("inspect", *reg.skopeo_args(""), f"docker://{target}").stdout)
    assert inspected["Digest"] == digest
    skopeo("copy", *reg.skopeo_args("src"), f"docker://{target}", f"dir:{tmp_root}/out")
    # pushing again: every blob exists already
    events.clear()
    asyncio.run(push(parse(target), store, result.manifest_digest, hosts=reg.hosts(),
                     credentials=reg.credentials, progress=events.append))
    assert {e.status for e in events if e.id and e.status != "Preparing"} == {"Layer already exists"}


def test_cross_repository_mount_tags_and_delete(distribution_auth: RunningRegistry, busybox_layout: Layout,
                                                 tmp_root: str) -> None:
    reg = distribution_auth
    _seed(reg, busybox_layout, "cais/mount-src")
    store = ContentStore(tmp_root)
    result = _pull(reg, f"{reg.host}/cais/mount-src:latest", store)
    events: list[ProgressEvent] = []
    for tag in ("a", "b", "c"):
        asyncio.run(push(parse(f"{reg.host}/cais/mount-dst:{tag}"), store, result.manifest_digest,
                         hosts=reg.hosts(), credentials=reg.credentials, progress=events.append,
                         mount_from=("cais/mount-src",)))
    assert any(e.status == "Mounted from cais/mount-src" for e in events)

    async def work() -> None:
        async with Registry(reg.host, hosts=reg.hosts(), credentials=reg.credentials) as r:
            assert sorted(await r.list_tags("cais/mount-dst", page_size=2)) == ["a", "b", "c"]
            await r.delete_manifest("cais/mount-dst", result.manifest_digest)
            with pytest.raises(NotFound):
                await r.get_manifest("cais/mount-dst", "a")
    asyncio.run(work())


def test_wrong_password_is_a_clear_error(distribution_auth: RunningRegistry, tmp_root: str) -> None:
    from cais.registry.credentials import Credentials
    with pytest.raises(Unauthorized, match="401|UNAUTHORIZED"):
        asyncio.run(pull(parse(f"{distribution_auth.host}/cais/none:latest"), ContentStore(tmp_root),
                         hosts=distribution_auth.hosts(), credentials=Credentials("cais", "wrong")))


def test_platform_selection_through_an_index(distribution: RunningRegistry, tmp_root: str) -> None:
    from cais.image.platform import Platform, host_platform
    from tests.registry.images import tar_files, write_oci_multiarch

    host = host_platform().architecture
    other = "arm64" if host != "arm64" else "amd64"
    layout = f"{tmp_root}/multi"
    index_digest, manifests = write_oci_multiarch(layout, {other: [tar_files({"arch": other.encode()})],
                                                           host: [tar_files({"arch": host.encode()})]})
    skopeo("copy", "--all", *distribution.skopeo_args("dest"), f"oci:{layout}:latest",
           f"docker://{distribution.host}/cais/multi:latest")
    store = ContentStore(f"{tmp_root}/store")
    result = _pull(distribution, f"{distribution.host}/cais/multi:latest", store)
    assert (result.digest, result.index_digest, result.manifest_digest) == (index_digest, index_digest, manifests[host])
    assert store.has(index_digest)
    other_result = _pull(distribution, f"{distribution.host}/cais/multi:latest", store,
                         platform=Platform("linux", other))
    assert other_result.manifest_digest == manifests[other]
    # and the whole index goes back up
    asyncio.run(push(parse(f"{distribution.host}/cais/multi-copy:v1"), store, index_digest,
                     hosts=distribution.hosts()))
    raw = skopeo("inspect", "--raw", *distribution.skopeo_args(""), f"docker://{distribution.host}/cais/multi-copy:v1")
    assert json.loads(raw.stdout)["manifests"][0]["digest"] == manifests[other]
