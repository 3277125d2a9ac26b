"""Manifests, indexes and platform selection, from the examples of the Docker and OCI specs."""

import json

import pytest

from cais.image import manifest as m
from cais.image.platform import Platform, host_platform, parse_platform, platform_vector

# Docker "Image Manifest V2, Schema 2" spec, manifest example (digests made valid: full length).
D = ["sha256:" + c * 64 for c in "0123456789abcdef"]

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": D[1]},
    "layers": [
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654, "digest": D[2]},
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 16724, "digest": D[3]},
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 73109, "digest": D[4]},
    ],
}

# Docker spec, manifest list example.
DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 7143, "digest": D[5],
         "platform": {"architecture": "ppc64le", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 7682, "digest": D[6],
         "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]}},
    ],
}

# OCI image-spec, manifest.md example.
OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D[7], "size": 7023},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D[8], "size": 32654},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D[9], "size": 16724},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": D[10], "size": 73109},
    ],
    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[11], "size": 7682},
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

# OCI image-spec, image-index.md example.
OCI_INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7143, "digest": D[12],
         "platform": {"architecture": "ppc64le", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7682, "digest": D[13],
         "platform": {"architecture": "amd64", "os": "linux"}},
    ],
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}


def raw(obj):
    return json.dumps(obj).encode()


def test_docker_manifest():
    man = m.parse_manifest(raw(DOCKER_MANIFEST), m.DOCKER_MANIFEST)
    assert isinstance(man, m.Manifest) and man.is_image
    assert man.config.digest == D[1] and man.config.size == 7023
    assert [layer.size for layer in man.layers] == [32654, 16724, 73109]
    assert {m.layer_compression(layer.media_type) for layer in man.layers} == {"gzip"}
    assert m.parse_manifest(man.to_bytes()) == man  # round trip


def test_oci_manifest_and_missing_media_type():
    man = m.parse_manifest(raw(OCI_MANIFEST))
    assert man.media_type == m.OCI_MANIFEST and man.subject.digest == D[11]
    assert man.annotations["com.example.key1"] == "value1"
    assert m.layer_compression(man.layers[2].media_type) == "zstd"
    bare = {k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"}
    assert m.parse_manifest(raw(bare)).media_type == m.OCI_MANIFEST
    bare_index = {k: v for k, v in OCI_INDEX.items() if k != "mediaType"}
    assert m.parse_manifest(raw(bare_index)).media_type == m.OCI_INDEX


def test_indexes_and_selection():
    for doc in (DOCKER_LIST, OCI_INDEX):
        idx = m.parse_manifest(raw(doc))
        assert isinstance(idx, m.Index)
        assert m.select_manifest(idx, Platform("linux", "amd64")).digest == doc["manifests"][1]["digest"]
        assert m.select_manifest(idx, parse_platform("linux/ppc64le")).digest == doc["manifests"][0]["digest"]
        with pytest.raises(m.ManifestError, match="^no matching manifest for linux/arm64 in the manifest list entries$"):
            m.select_manifest(idx, parse_platform("linux/arm64"))
        assert m.parse_manifest(idx.to_bytes()) == idx


def _index(*platforms):
    return m.Index(m.OCI_INDEX, tuple(
        m.Descriptor(m.OCI_MANIFEST, D[i], 1, platform=p) for i, p in enumerate(platforms)))


def test_platform_rules_like_containerd():
    assert parse_platform("linux/x86_64") == Platform("linux", "amd64")
    assert parse_platform("linux/aarch64/v8") == Platform("linux", "arm64")
    assert parse_platform("linux/armhf") == Platform("linux", "arm", "v7")
    assert parse_platform("linux/arm") == Platform("linux", "arm", "v7")
    assert parse_platform("linux/amd64/v1") == Platform("linux", "amd64")
    assert parse_platform("i386") == Platform("linux", "386")
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    with pytest.raises(ValueError):
        parse_platform("linux//v7")
    assert [str(p) for p in platform_vector(parse_platform("linux/amd64/v3"))] == [
        "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]
    assert [str(p) for p in platform_vector(parse_platform("linux/arm64"))] == [
        "linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]

    idx = _index(Platform("linux", "386"), Platform("linux", "amd64", "v2"), Platform("linux", "amd64"),
                 Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7"), Platform("windows", "amd64"))
    assert m.select_manifest(idx, Platform("linux", "amd64", "v3")).digest == D[1]  # best lower variant
    assert m.select_manifest(idx, Platform("linux", "amd64")).digest == D[2]  # plain amd64 = v1
    assert m.select_manifest(idx, Platform("linux", "arm64")).digest == D[4]  # arm64 runs arm/v7 first
    assert m.select_manifest(idx, Platform("linux", "arm", "v6")).digest == D[3]
    assert m.select_manifest(_index(Platform("linux", "386")), Platform("linux", "amd64")).digest == D[0]
    assert m.select_manifest(_index(Platform("linux", "x86_64")), Platform("linux", "amd64")).digest == D[0]
    assert m.select_manifest(_index(Platform("linux", "aarch64", "v8")), parse_platform("linux/arm64")).digest == D[0]
    # Attestation manifests (buildkit: unknown/unknown) are never picked.
    assert m.matching_manifests(_index(Platform("unknown", "unknown")), Platform("linux", "amd64")) == []
    assert host_platform().os == "linux"
    assert m.select_manifest(_index(host_platform())).digest == D[0]


BAD = [
    (b"not json", "manifest is not valid JSON"),
    (b"[]", "manifest is not a JSON object"),
    (raw({"schemaVersion": 1, "name": "x", "fsLayers": []}), "schema 1 is not supported"),
    (raw({**DOCKER_MANIFEST, "schemaVersion": 3}), "unsupported schemaVersion 3"),
    (raw({**DOCKER_MANIFEST, "mediaType": "application/x-foo"}), "unsupported manifest media type: application/x-foo"),
    (raw({**DOCKER_MANIFEST, "manifests": []}), "ambiguous"),
    (raw({k: v for k, v in DOCKER_MANIFEST.items() if k != "config"}), "missing config descriptor"),
    (raw({**DOCKER_MANIFEST, "layers": [{"mediaType": m.OCI_LAYER, "digest": "sha256:12", "size": 1}]}),
     r"layers\[0\]: invalid digest"),
    (raw({**DOCKER_MANIFEST, "layers": [{"mediaType": m.OCI_LAYER, "digest": D[0], "size": -1}]}),
     r"layers\[0\]: size must be a non-negative integer"),
    (raw({**DOCKER_MANIFEST, "layers": [{"mediaType": "text/html", "digest": D[0], "size": 1}]}),
     "unsupported layer media type text/html"),
    (raw({**OCI_INDEX, "manifests": [{"mediaType": m.OCI_MANIFEST, "digest": D[0], "size": 1, "platform": {"os": "linux"}}]}),
     "platform needs os and architecture"),
    (raw({**OCI_INDEX, "manifests": {}}), "manifests must be a list"),
    (b" " * (m.MAX_MANIFEST_SIZE + 1), "over the limit"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_manifests(data, message):
    with pytest.raises(m.ManifestError, match=message):
        m.parse_manifest(data)


def test_content_type_must_agree():
    with pytest.raises(m.ManifestError, match="does not match the content type"):
        m.parse_manifest(raw(DOCKER_MANIFEST), m.OCI_INDEX)
    assert isinstance(m.parse_manifest(raw(DOCKER_MANIFEST), "application/json"), m.Manifest)


def test_artifact_manifest_is_not_an_image():
    art = {**OCI_MANIFEST, "config": {"mediaType": m.OCI_EMPTY, "digest": D[0], "size": 2},
           "layers": [{"mediaType": "application/vnd.example.sig", "digest": D[1], "size": 10}]}
    assert not m.parse_manifest(raw(art)).is_image
