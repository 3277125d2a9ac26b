"""Faults between cais's client and the real distribution registry: drops, bad bytes, error statuses."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from cais.image.content import ContentStore
from cais.image.reference import parse
from cais.registry.client import RetryPolicy
from cais.registry.errors import Denied, NotFound, RegistryError, TooManyRequests, Unauthorized
from cais.registry.hosts import RegistryHosts
from cais.registry.pull import pull
from tests.registry.conftest import Layout, RunningRegistry, skopeo
from tests.registry.faults import Fault, FaultProxy, fault_proxy
from tests.registry.images import tar_files, write_oci_layout

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


@pytest.fixture(scope="module")
def seeded(distribution: RunningRegistry) -> Iterator[Layout]:
    """An image with an incompressible 4 MiB layer, pushed by skopeo to the distribution registry."""
    top = tempfile.mkdtemp(prefix="cais-registry-faults-")
    try:
        layout = Layout(os.path.join(top, "big"), "")
        layout.digest = write_oci_layout(layout.path, [tar_files({"data": os.urandom(4 << 20)})])
        skopeo("copy", *distribution.skopeo_args("dest"), layout.ref(), f"docker://{distribution.host}/cais/faults:latest")
        yield layout
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def proxy(distribution: RunningRegistry, seeded: Layout) -> Iterator[FaultProxy]:
    with fault_proxy(distribution.host) as p:
        yield p


def _pull(proxy: FaultProxy, store: ContentStore, retry: RetryPolicy = FAST):
    return asyncio.run(pull(parse(f"{proxy.host}/cais/faults:latest"), store, hosts=RegistryHosts(certs_dirs=()),
                            retry=retry))


def _blobs(store: ContentStore) -> list[str]:
    return sorted(d for d, _ in store.walk())


def test_dropped_connection_resumes_with_range(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    proxy.faults.append(Fault("/blobs/", "drop", method="GET", times=2))
    store = ContentStore(tmp_root)
    result = _pull(proxy, store)
    assert result.manifest_digest == seeded.digest
    ranged = [s for s in proxy.seen if s.range and s.range != "bytes=0-"]
    assert ranged, "the retry after a drop should ask for the rest with a Range header"
    assert all(store.verify(d) for d in _blobs(store))


def test_resume_across_pulls(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    store = ContentStore(tmp_root)
    proxy.faults.append(Fault("/blobs/", "drop", method="GET", times=100))
    with pytest.raises(RegistryError, match="after 3 attempts; a later pull resumes") as info:
        _pull(proxy, store)
    assert "\n" not in str(info.value)
    assert _blobs(store) == []
    assert any(os.path.getsize(os.path.join(tmp_root, "ingest", f)) for f in os.listdir(f"{tmp_root}/ingest"))
    proxy.faults.clear()
    proxy.seen.clear()
    _pull(proxy, store)
    assert any(s.range and s.range != "bytes=0-" for s in proxy.seen)
    assert len(_blobs(store)) == 3  # manifest, config, layer


def test_altered_bytes_fail_cleanly(proxy: FaultProxy, tmp_root: str) -> None:
    store = ContentStore(tmp_root)
    proxy.faults.append(Fault("/blobs/", "corrupt", method="GET", times=100))
    with pytest.raises(RegistryError, match="digest mismatch") as info:
        _pull(proxy, store)
    assert "\n" not in str(info.value)
    assert _blobs(store) == []
    # at most the partial download of a layer cancelled when the config failed, kept for a resume
    assert all(name.startswith("pull-") for name in os.listdir(f"{tmp_root}/ingest"))


def test_altered_manifest_fails_cleanly(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    store = ContentStore(tmp_root)
    proxy.faults.append(Fault("/manifests/", "corrupt", method="GET", times=100))
    with pytest.raises(RegistryError, match="digest mismatch"):
        asyncio.run(pull(parse(f"{proxy.host}/cais/faults@{seeded.digest}"), store,
                         hosts=RegistryHosts(certs_dirs=()), retry=FAST))
    assert _blobs(store) == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_errors_are_retried(status: int, proxy: FaultProxy, tmp_root: str) -> None:
    proxy.faults.append(Fault("/manifests/", "status", status=status, times=2, headers={"Retry-After": "0"}))
    proxy.faults.append(Fault("/blobs/", "status", status=status, times=1))
    _pull(proxy, ContentStore(tmp_root))
    assert [s.status for s in proxy.seen if "/manifests/" in s.path][:3] == [status, status, 200]


@pytest.mark.parametrize(("status", "error", "text"), [
    (401, Unauthorized, "log in first"), (403, Denied, "injected 403"), (404, NotFound, "injected 404"),
    (429, TooManyRequests, "rate limited"), (500, RegistryError, "injected 500")])
def test_persistent_errors_are_clear(status: int, error: type, text: str, proxy: FaultProxy, tmp_root: str) -> None:
    proxy.faults.append(Fault("/manifests/", "status", status=status, times=100))
    store = ContentStore(tmp_root)
    with pytest.raises(error, match=text) as info:
        _pull(proxy, store)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    requests = [s for s in proxy.seen if "/manifests/" in s.path]
    retried = status in (429, 500)
    assert len(requests) == (FAST.attempts if retried else 1)
    assert _blobs(store) == []


def test_concurrent_pulls_share_downloads(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    """Two pulls of one image into one store at once: each blob is downloaded once, both succeed."""
    store = ContentStore(tmp_root)
    hosts = RegistryHosts(certs_dirs=())

    async def both() -> list:
        ref = parse(f"{proxy.host}/cais/faults:latest")
        return await asyncio.gather(pull(ref, store, hosts=hosts), pull(ref, store, hosts=hosts))
    first, second = asyncio.run(both())
    assert first.manifest_digest == second.manifest_digest == seeded.digest
    assert sorted(first.stored + second.stored) == _blobs(store)  # every blob stored by exactly one of them
    layer_gets = [s for s in proxy.seen if s.method == "GET" and "/blobs/" in s.path]
    assert len(layer_gets) == 2  # config and layer, once each
    assert all(store.verify(d) for d in _blobs(store))


def test_blob_redirects_are_followed(proxy: FaultProxy, distribution: RunningRegistry, seeded: Layout,
                                     tmp_root: str) -> None:
    """Registries may send blob downloads elsewhere (object storage): cais follows, still verifying."""
    with fault_proxy(distribution.host) as storage:
        proxy.faults.append(Fault("/blobs/", "redirect", method="GET", times=100, to=storage.host))
        store = ContentStore(tmp_root)
        result = _pull(proxy, store)
        assert result.manifest_digest == seeded.digest
        assert len([s for s in storage.seen if "/blobs/" in s.path]) == 2
        assert all(store.verify(d) for d in _blobs(store))


def test_dropped_manifest_is_retried(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    proxy.faults.append(Fault("/manifests/", "drop", method="GET", times=2))
    assert _pull(proxy, ContentStore(tmp_root)).manifest_digest == seeded.digest
    proxy.faults.append(Fault("/manifests/", "drop", method="GET", times=100))
    with pytest.raises(RegistryError, match="after 3 attempts") as info:
        _pull(proxy, ContentStore(f"{tmp_root}/2"))
    assert "\n" not in str(info.value)


def test_failed_uploads_start_over(proxy: FaultProxy, seeded: Layout, distribution: RunningRegistry,
                                   tmp_root: str) -> None:
    from cais.registry.push import push
    store = ContentStore(tmp_root)
    result = _pull(proxy, store)
    proxy.faults.append(Fault("/blobs/uploads/", "status", status=503, method="PUT", times=2))
    events = []
    asyncio.run(push(parse(f"{proxy.host}/cais/faults-push:v1"), store, result.manifest_digest,
                     hosts=RegistryHosts(certs_dirs=()), retry=FAST, progress=events.append))
    assert any(e.status.startswith("Retrying in") for e in events)
    inspected = skopeo("inspect", *distribution.skopeo_args(""), f"docker://{distribution.host}/cais/faults-push:v1")
    assert seeded.digest in inspected.stdout
    proxy.faults.append(Fault("/blobs/uploads/", "status", status=400, method="PUT", times=100))
    with pytest.raises(RegistryError, match="injected 400"):  # not transient: no retry
        asyncio.run(push(parse(f"{proxy.host}/cais/faults-push2:v1"), store, result.manifest_digest,
                         hosts=RegistryHosts(certs_dirs=()), retry=FAST))


def test_one_bad_layer_publishes_no_manifest(proxy: FaultProxy, seeded: Layout, tmp_root: str) -> None:
    import json
    with open(os.path.join(seeded.path, "blobs", "sha256", seeded.digest[7:])) as f:
        layer = json.load(f)["layers"][0]["digest"]
    store = ContentStore(tmp_root)
    proxy.faults.append(Fault(layer, "corrupt", method="GET", times=100))
    with pytest.raises(RegistryError, match=f"GET blob {layer}.*digest mismatch"):
        _pull(proxy, store)
    assert not store.has(layer) and not store.has(seeded.digest)  # no image half there
    proxy.faults.clear()
    result = _pull(proxy, store)
    assert result.manifest_digest == seeded.digest and layer in result.stored
