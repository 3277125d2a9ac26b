"""cais's registry server, driven by skopeo, by cais's client, and by raw hostile requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import ssl
import threading

import pytest

from cais.image.content import ContentStore
from cais.image.reference import parse
from cais.registry.client import Registry
from cais.registry.credentials import Credentials
from cais.registry.errors import NotFound, Unauthorized
from cais.registry.pull import pull
from cais.registry.push import push
from tests.registry.conftest import PASSWORD, USER, Layout, RunningRegistry, cais_registry, skopeo
from tests.wait import wait_for

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def call(reg: RunningRegistry, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request, path sent exactly as given."""
    host, port = reg.host.split(":")
    if reg.ca_dir:
        ctx = ssl.create_default_context(cafile=os.path.join(reg.ca_dir, "ca.crt"))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = dict(headers or {})
    if reg.auth and auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload(reg: RunningRegistry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = call(reg, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202
    status, _, body = call(reg, "PUT", f"{headers['location']}?digest={digest}", data,
                              {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return digest


def error_code(body: bytes) -> str:
    return json.loads(body)["errors"][0]["code"]


@pytest.mark.parametrize("which", ["cais_server", "cais_server_auth"])
def test_skopeo_round_trip(which: str, busybox_layout: Layout, tmp_root: str,
                           request: pytest.FixtureRequest) -> None:
    reg: RunningRegistry = request.getfixturevalue(which)
    target = f"docker://{reg.host}/cais/skopeo:v1"
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref(), target)
    inspected = json.loads(skopeo("inspect", *reg.skopeo_args(""), target).stdout)
    assert inspected["Digest"] == busybox_layout.digest
    assert len(inspected["Layers"]) == 2
    skopeo("copy", *reg.skopeo_args("src"), target, f"dir:{tmp_root}/out")
    with open(f"{tmp_root}/out/manifest.json", "rb") as f:
        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == busybox_layout.digest
    # and cais's client pulls what skopeo pushed, then pushes it elsewhere (chunked, mounted)
    store = ContentStore(f"{tmp_root}/store")
    result = asyncio.run(pull(parse(f"{reg.host}/cais/skopeo:v1"), store, hosts=reg.hosts(),
                              credentials=reg.credentials))
    assert result.manifest_digest == busybox_layout.digest
    asyncio.run(push(parse(f"{reg.host}/cais/chunked:v2"), store, result.manifest_digest, hosts=reg.hosts(),
                     credentials=reg.credentials, chunk_size=64 << 10))
    events = []
    asyncio.run(push(parse(f"{reg.host}/cais/mounted:v3"), store, result.manifest_digest, hosts=reg.hosts(),
                     credentials=reg.credentials, mount_from=("cais/skopeo",), progress=events.append))
    assert any(e.status == "Mounted from cais/skopeo" for e in events)
    for repo in ("chunked:v2", "mounted:v3"):
        inspected = json.loads(skopeo("inspect", *reg.skopeo_args(""), f"docker://{reg.host}/cais/{repo}").stdout)
        assert inspected["Digest"] == busybox_layout.digest


def test_tags_catalog_delete_and_pagination(cais_server: RunningRegistry, busybox_layout: Layout,
                                            tmp_root: str) -> None:
    reg = cais_server
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref(), f"docker://{reg.host}/cais/tags:t0")
    store = ContentStore(tmp_root)
    result = asyncio.run(pull(parse(f"{reg.host}/cais/tags:t0"), store, hosts=reg.hosts()))

    async def work() -> None:
        async with Registry(reg.host, hosts=reg.hosts()) as r:
            body = store.read(result.manifest_digest)
            for tag in ("t1", "t2", "t3", "t4"):
                await r.put_manifest("cais/tags", tag, body, OCI_MANIFEST)
            assert await r.list_tags("cais/tags", page_size=2) == ["t0", "t1", "t2", "t3", "t4"]
            await r.delete_manifest("cais/tags", "t4")
            assert await r.list_tags("cais/tags") == ["t0", "t1", "t2", "t3"]
            await r.delete_manifest("cais/tags", result.manifest_digest)
            assert await r.list_tags("cais/tags") == []
            with pytest.raises(NotFound, match="MANIFEST_UNKNOWN"):
                await r.get_manifest("cais/tags", "t1")
    asyncio.run(work())
    status, _, body = call(reg, "GET", "/v2/_catalog?n=1000")
    assert status == 200 and "cais/tags" in json.loads(body)["repositories"]


def test_hostile_requests(cais_server: RunningRegistry) -> None:
    reg = cais_server
    for path in ("/v2/../../etc/tags/list", "/v2/%2e%2e/x/tags/list", "/v2/Upper/tags/list",
                 "/v2/a//b/tags/list", "/v2/_x/tags/list", "/v2/" + "a/" * 200 + "b/tags/list"):
        status, _, body = call(reg, "GET", path)
        assert status in (400, 404), (path, status)
        assert error_code(body) in ("NAME_INVALID", "NOT_FOUND", "NAME_UNKNOWN"), path
    assert not os.path.exists(os.path.join(reg.root, "data", "etc"))
    status, _, body = call(reg, "GET", "/v2/cais/x/blobs/sha256:abc")
    assert (status, error_code(body)) == (400, "DIGEST_INVALID")
    status, _, body = call(reg, "POST", "/v2/cais/x/blobs/uploads/?digest=md5:zz", b"x")
    assert (status, error_code(body)) == (400, "DIGEST_INVALID")
    # a blob whose bytes do not match the digest given at the end is refused and not kept
    status, headers, _ = call(reg, "POST", "/v2/cais/x/blobs/uploads/")
    wrong = "sha256:" + "0" * 64
    status, _, body = call(reg, "PUT", f"{headers['location']}?digest={wrong}", b"not zeros")
    assert (status, error_code(body)) == (400, "DIGEST_INVALID")
    assert call(reg, "HEAD", f"/v2/cais/x/blobs/{wrong}")[0] == 404
    # an upload that skips bytes: 416
    status, headers, _ = call(reg, "POST", "/v2/cais/x/blobs/uploads/")
    status, _, _ = call(reg, "PATCH", headers["location"], b"abc", {"Content-Range": "5-7"})
    assert status == 416
    # manifests: not JSON, too large, referencing blobs the repository does not have
    headers = {"Content-Type": OCI_MANIFEST}
    status, _, body = call(reg, "PUT", "/v2/cais/x/manifests/bad", b"{not json", headers)
    assert (status, error_code(body)) == (400, "MANIFEST_INVALID")
    status, _, body = call(reg, "PUT", "/v2/cais/x/manifests/big", b" " * (5 << 20), headers)
    assert status == 413
    missing = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": wrong, "size": 9},
               "layers": []}
    status, _, body = call(reg, "PUT", "/v2/cais/x/manifests/missing", json.dumps(missing).encode(), headers)
    assert (status, error_code(body)) == (400, "MANIFEST_BLOB_UNKNOWN")
    # a blob of another repository cannot be read or mounted through this one without being pushed
    digest = upload(reg, "cais/owner", b"private bytes")
    assert call(reg, "GET", f"/v2/cais/other/blobs/{digest}")[0] == 404
    status, headers, _ = call(reg, "POST", f"/v2/cais/other/blobs/uploads/?mount={digest}&from=cais/nobody")
    assert status == 202  # not mountable from a repository without it: a plain upload starts instead
    status, headers, _ = call(reg, "HEAD", f"/v2/cais/owner/blobs/{digest}")
    assert status == 200 and headers["content-length"] == "13" and headers["docker-content-digest"] == digest
    # Range reads
    status, headers, body = call(reg, "GET", f"/v2/cais/owner/blobs/{digest}", headers={"Range": "bytes=8-"})
    assert (status, body) == (206, b"bytes")


def test_concurrent_pushes_of_one_blob(cais_server: RunningRegistry) -> None:
    data = os.urandom(3 << 20)
    results: list[str] = []

    def go(i: int) -> None:
        results.append(upload(cais_server, f"cais/race{i % 2}", data))
    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    for repo in ("cais/race0", "cais/race1"):
        status, _, body = call(cais_server, "GET", f"/v2/{repo}/blobs/{results[0]}")
        assert status == 200 and body == data


def test_referrers(cais_server: RunningRegistry) -> None:
    reg = cais_server
    config = upload(reg, "cais/ref", b"{}")
    layer = upload(reg, "cais/ref", b"layer")
    image = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}]}
    body = json.dumps(image).encode()
    status, headers, _ = call(reg, "PUT", "/v2/cais/ref/manifests/img", body, {"Content-Type": OCI_MANIFEST})
    subject = headers["docker-content-digest"]
    sbom = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(body)}}
    sbom_body = json.dumps(sbom).encode()
    status, headers, _ = call(reg, "PUT", f"/v2/cais/ref/manifests/sha256:{hashlib.sha256(sbom_body).hexdigest()}",
                                 sbom_body, {"Content-Type": OCI_MANIFEST})
    assert status == 201 and headers["oci-subject"] == subject
    status, _, out = call(reg, "GET", f"/v2/cais/ref/referrers/{subject}")
    index = json.loads(out)
    assert [m["artifactType"] for m in index["manifests"]] == ["application/spdx+json"]
    status, headers, out = call(reg, "GET", f"/v2/cais/ref/referrers/{subject}?artifactType=x/y")
    assert json.loads(out)["manifests"] == [] and headers["oci-filters-applied"] == "artifactType"


def test_auth_required(cais_server_auth: RunningRegistry, tmp_root: str) -> None:
    reg = cais_server_auth
    status, headers, body = call(reg, "GET", "/v2/", auth=False)
    assert status == 401 and headers["www-authenticate"].startswith("Basic ")
    with pytest.raises(Unauthorized):
        asyncio.run(pull(parse(f"{reg.host}/cais/x:latest"), ContentStore(tmp_root), hosts=reg.hosts(),
                         credentials=Credentials(USER, "nope")))
    assert call(reg, "GET", "/v2/")[0] == 200


def test_abandoned_uploads_are_removed() -> None:
    with cais_registry(upload_ttl=1.0) as reg:
        status, headers, _ = call(reg, "POST", "/v2/cais/slow/blobs/uploads/")
        assert call(reg, "PATCH", headers["location"], b"half a blob")[0] == 202
        ingest = os.path.join(reg.root, "data", "content", "ingest")
        assert os.listdir(ingest)
        wait_for(lambda: os.listdir(ingest) == [], "the abandoned upload's removal")
        status, _, body = call(reg, "PATCH", headers["location"], b"more")
        assert (status, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN")


def test_mirrors_for_docker_hub(busybox_layout: Layout, tmp_root: str) -> None:
    """docker.io references go to the first mirror that has the image (no traffic leaves loopback)."""
    from cais.registry.hosts import RegistryHosts
    with cais_registry() as empty, cais_registry() as mirror:
        skopeo("copy", *mirror.skopeo_args("dest"), busybox_layout.ref(), f"docker://{mirror.host}/library/cais:1")
        hosts = RegistryHosts(mirrors=[f"http://{empty.host}", f"http://{mirror.host}"], certs_dirs=())
        result = asyncio.run(pull(parse("cais:1"), ContentStore(tmp_root), hosts=hosts))
        assert result.manifest_digest == busybox_layout.digest


def test_server_command_line_errors(cais_server: RunningRegistry, tmp_root: str) -> None:
    import subprocess
    import sys
    cases = [
        (["--addr", "nonsense"], "invalid address"),
        (["--addr", cais_server.host], "cannot listen on"),
        (["--htpasswd", f"{tmp_root}/missing"], "cannot read htpasswd file"),
        (["--tls-cert", f"{tmp_root}/missing.crt", "--tls-key", f"{tmp_root}/missing.key"], "No such file"),
        (["--tls-cert", f"{tmp_root}/x.crt"], "--tls-cert and --tls-key go together"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "cais.registry.server", "--root", f"{tmp_root}/root",
                               "--addr", "127.0.0.1:1", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr


def test_multi_platform_index(cais_server: RunningRegistry, tmp_root: str) -> None:
    from cais.image.platform import Platform, host_platform
    from tests.registry.images import tar_files, write_oci_multiarch
    host = host_platform().architecture
    other = "arm64" if host != "arm64" else "amd64"
    layout = f"{tmp_root}/multi"
    index, manifests = write_oci_multiarch(layout, {host: [tar_files({"a": b"1"})], other: [tar_files({"b": b"2"})]})
    target = f"docker://{cais_server.host}/cais/multi:latest"
    skopeo("copy", "--all", *cais_server.skopeo_args("dest"), f"oci:{layout}:latest", target)
    raw = json.loads(skopeo("inspect", "--raw", *cais_server.skopeo_args(""), target).stdout)
    assert sorted(m["digest"] for m in raw["manifests"]) == sorted(manifests.values())
    store = ContentStore(f"{tmp_root}/store")
    for arch in (host, other):
        result = asyncio.run(pull(parse(f"{cais_server.host}/cais/multi:latest"), store, hosts=cais_server.hosts(),
                                  platform=Platform("linux", arch)))
        assert (result.index_digest, result.manifest_digest) == (index, manifests[arch])
    # an index whose children the repository lacks is refused
    status, _, body = call(cais_server, "PUT", "/v2/cais/empty/manifests/x", store.read(index),
                           {"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert (status, error_code(body)) == (400, "MANIFEST_BLOB_UNKNOWN")


def test_garbage_collection(busybox_layout: Layout, tmp_root: str) -> None:
    import subprocess
    import sys

    from tests.registry.images import tar_files, write_oci_layout
    other = f"{tmp_root}/other"
    write_oci_layout(other, [tar_files({"only-here": b"x" * 1000})])
    with cais_registry() as reg:
        skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref(), f"docker://{reg.host}/cais/keep:v1")
        skopeo("copy", *reg.skopeo_args("dest"), f"oci:{other}:latest", f"docker://{reg.host}/cais/drop:v1")
        dangling = upload(reg, "cais/drop", b"never referenced")
        status, headers, _ = call(reg, "HEAD", "/v2/cais/drop/manifests/v1")
        assert call(reg, "DELETE", f"/v2/cais/drop/manifests/{headers['docker-content-digest']}")[0] == 202
        root = os.path.join(reg.root, "data")
        proc = subprocess.run([sys.executable, "-m", "cais.registry.server", "--root", root, "--gc"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith("removed 4 blobs"), proc.stdout + proc.stderr
        assert call(reg, "HEAD", f"/v2/cais/drop/blobs/{dangling}")[0] == 404
        skopeo("copy", *reg.skopeo_args("src"), f"docker://{reg.host}/cais/keep:v1", f"dir:{tmp_root}/out")
