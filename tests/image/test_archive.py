"""save/load (docker-archive, OCI layout), import/export, commit — within cais."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from cais.image.archive import ArchiveError, load, load_layout, save
from cais.image.commit import commit
from cais.image.content import digest_bytes
from cais.image.rootfs import export_image, import_rootfs
from cais.image.store import ImageError
from tests.image.builders import put_image, tar_layer
from tests.image.conftest import make_store

L1 = tar_layer({"etc/": None, "etc/hello": b"hello\n", "bin/": None, "bin/sh": "/bin/busybox"})
L2 = tar_layer({"etc/.wh.hello": b"", "etc/world": b"world\n"})


def members(data: bytes) -> dict[str, bytes | None]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            out[m.name] = tar.extractfile(m).read() if m.isreg() else None
    return out


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_load_round_trip(store, image_root, fmt):
    digest = put_image(store, [L1, L2], "zstd")
    image_id = store.register(digest, "app:1")
    store.tag("app:1", "app:2")
    out = io.BytesIO()
    save(store, ["app"], out, format=fmt)
    files = members(out.getvalue())
    assert files["oci-layout"] == b'{"imageLayoutVersion":"1.0.0"}'
    index = json.loads(files["index.json"])
    assert sorted(m["annotations"]["io.containerd.image.name"] for m in index["manifests"]) == [
        "docker.io/library/app:1", "docker.io/library/app:2"]
    if fmt == "docker":
        [entry] = json.loads(files["manifest.json"])
        assert sorted(entry["RepoTags"]) == ["app:1", "app:2"]
        assert entry["Layers"] == [f"blobs/sha256/{digest_bytes(x)[7:]}" for x in (L1, L2)]
        assert files[entry["Layers"][0]] == L1  # uncompressed, digest = diff_id
    else:
        assert f"blobs/sha256/{digest[7:]}" in files  # the original manifest, original digests

    other = make_store(os.path.join(image_root, "other"))
    try:
        import zstandard
        compressed = zstandard.ZstdCompressor().compress(out.getvalue())  # docker load takes zstd archives too
        assert sorted(load(other, io.BytesIO(compressed))) == ["Loaded image: app:1", "Loaded image: app:2"]
        assert other.inspect("app:2")["Id"] == image_id
        assert other.inspect("app:1")["RootFS"] == store.inspect("app:1")["RootFS"]
        again = io.BytesIO()
        save(other, ["app:1"], again, format=fmt)  # and back again
        assert load(store, io.BytesIO(again.getvalue())) == ["Loaded image: app:1"]
        assert other.gc()["BlobsDeleted"] == []  # load left no stray blobs
    finally:
        other.close()


def test_load_docker_2010_layout(store):
    """docker 20.10's save: <v1id>/layer.tar (a symlink for a repeated layer), <id>.json, manifest.json."""
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [digest_bytes(L1), digest_bytes(L1)]}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, data=None, link=None):
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        add("aaaa/layer.tar", L1)
        add("aaaa/VERSION", b"1.0")
        add("bbbb/layer.tar", link="../aaaa/layer.tar")
        add("cfg.json", json.dumps(config).encode())
        add("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["old:save"],
                                          "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]).encode())
    assert load(store, io.BytesIO(buf.getvalue())) == ["Loaded image: old:save"]
    assert len(store.layers_of("old:save")) == 2
    previous = store.register(put_image(store, [L2]), "old:save")
    assert load(store, io.BytesIO(buf.getvalue())) == [
        f"The image old:save already exists, renaming the old one with ID {previous} to empty string",
        "Loaded image: old:save"]


def corrupt_archives(good: bytes) -> list[tuple[bytes, str]]:
    files = members(good)
    layer = next(n for n in files if n.startswith("blobs/") and files[n] == L1)

    def rebuild(changes: dict[str, bytes | None]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in {**files, **changes}.items():
                if data is None and name in changes:
                    continue
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    return [
        (b"this is not a tar", "invalid archive"),
        (good[: len(good) // 2], "invalid archive"),
        (rebuild({layer: L1 + b"x"}), "does not match its digest"),
        (rebuild({layer: None}), "is missing"),
        (rebuild({"manifest.json": b"{not json"}), "manifest.json is not valid JSON"),
        (rebuild({"manifest.json": None, "index.json": None}), "no manifest.json or index.json"),
        (rebuild({"manifest.json": None, "index.json": b'{"schemaVersion": 2, "manifests": [{"mediaType": '
                  b'"application/vnd.oci.image.manifest.v1+json", "digest": "sha256:' + b"1" * 64 + b'", "size": 3}]}'}),
         "named in index.json is missing"),
    ]


def test_compressed_archives(store):
    import bz2
    import gzip
    import lzma

    store.register(put_image(store, [L1]), "app:1")
    out = io.BytesIO()
    save(store, ["app:1"], out)
    store.remove("app:1")
    import zstandard

    for compress in (gzip.compress, bz2.compress, lzma.compress, zstandard.ZstdCompressor().compress):
        data = compress(out.getvalue())
        assert load(store, io.BytesIO(data)) == ["Loaded image: app:1"]
        store.remove("app:1")
        with pytest.raises(ArchiveError, match="^invalid archive: "):
            load(store, io.BytesIO(data[: len(data) // 2]))
        assert store.list() == []


def test_bad_archives_load_nothing(store):
    digest = put_image(store, [L1, L2])
    store.register(digest, "app:1")
    good = io.BytesIO()
    save(store, ["app:1"], good)
    store.remove("app:1")
    blobs_before = sorted(store.content.walk())
    for data, message in corrupt_archives(good.getvalue()):
        with pytest.raises(ArchiveError, match=message):
            load(store, io.BytesIO(data))
        assert store.list() == [], message
        assert sorted(store.content.walk()) == blobs_before, message
        assert os.listdir(os.path.join(store.content.root, "ingest")) == []


def test_load_layout_dir(store, image_root):
    store.register(put_image(store, [L1]), "app:1")
    out = io.BytesIO()
    save(store, ["app:1"], out, format="oci")
    layout = os.path.join(image_root, "layout")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        tar.extractall(layout, filter="data")
    other = make_store(os.path.join(image_root, "other"))
    try:
        assert load_layout(other, layout) == ["Loaded image: app:1"]
    finally:
        other.close()


def test_import_export(store):
    rootfs = tar_layer({"bin/": None, "bin/tool": b"#!/bin/sh\n", "link": "bin/tool"})
    import gzip
    image_id = import_rootfs(store, io.BytesIO(gzip.compress(rootfs)), "imported:v1",
                             changes=["CMD [\"/bin/tool\"]", "ENV A=1 B=2", "LABEL x=y", "EXPOSE 80"],
                             message="hello")
    info = store.inspect("imported:v1")
    assert info["Id"] == image_id and info["Comment"] == "hello"
    assert info["Config"]["Cmd"] == ["/bin/tool"] and info["Config"]["Env"] == ["A=1", "B=2"]
    assert info["Config"]["Labels"] == {"x": "y"} and info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert info["RootFS"]["Layers"] == [digest_bytes(rootfs)]
    out = io.BytesIO()
    export_image(store, "imported:v1", out)
    files = members(out.getvalue())
    assert files["bin/tool"] == b"#!/bin/sh\n" and "link" in files
    # Garbage behind a gzip magic: refused, by whichever check sees it first.
    with pytest.raises(ImageError, match="invalid rootfs tarball|layer tar is truncated"):
        import_rootfs(store, io.BytesIO(b"\x1f\x8b" + b"garbage" * 10))
    with pytest.raises(ImageError, match="is not a valid change command"):
        import_rootfs(store, io.BytesIO(rootfs), changes=["RUN rm -rf /"])


def test_commit(store):
    base = store.register(put_image(store, [L1]), "base")
    cid = "e" * 64
    store.add_container(cid, "base")
    store.driver.create_rw(cid, store.layers_of("base")[-1]["ChainID"][7:])
    try:
        root = store.driver.mount(cid)
        try:
            with open(os.path.join(root, "new-file"), "w") as f:
                f.write("committed\n")
            os.unlink(os.path.join(root, "etc/hello"))
        finally:
            store.driver.unmount(cid)
        new = commit(store, cid, "committed:1", changes=["CMD [\"cat\", \"/new-file\"]"], comment="c", author="me")
    finally:
        store.driver.remove_rw(cid)
        store.remove_container(cid)
    info = store.inspect("committed:1")
    assert info["Id"] == new and info["Parent"] == base and info["Author"] == "me"
    assert info["Config"]["Cmd"] == ["cat", "/new-file"] and len(info["RootFS"]["Layers"]) == 2
    out = io.BytesIO()
    export_image(store, "committed:1", out)
    files = members(out.getvalue())
    assert files["new-file"] == b"committed\n" and "etc/hello" not in files
    from cais.image.store import ImageConflict
    with pytest.raises(ImageConflict, match="image has dependent child images"):
        store.remove(base[7:], force=True)
    # untagging the parent keeps it (an intermediate image); removing the child prunes it
    assert [r for r in store.remove("base") if "Deleted" in r] == []
    assert [i["Id"] for i in store.list()] == [new] and len(store.list(all=True)) == 2
    records = store.remove("committed:1")
    assert {"Deleted": new} in records and {"Deleted": base} in records
    assert store.list(all=True) == [] and store.meta.layers() == []


def test_hostile_archive_paths_touch_nothing(store, image_root):
    """Archive member names are only keys: `../`, absolute paths and links never reach the disk."""
    good = io.BytesIO()
    store.register(put_image(store, [L1]), "app:1")
    save(store, ["app:1"], good)
    store.remove("app:1")
    victim = os.path.join(image_root, "victim")
    with open(victim, "w") as f:
        f.write("intact")
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(good.getvalue())) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        for name in ("../../victim", victim, "blobs/../../victim"):
            info = tarfile.TarInfo(name)
            info.size = 4
            dst.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, victim
        dst.addfile(link)
    assert load(store, io.BytesIO(buf.getvalue())) == ["Loaded image: app:1"]
    with open(victim) as f:
        assert f.read() == "intact"
    assert sorted(os.listdir(image_root)) == ["image", "storage", "victim"]
    assert store.gc()["BlobsDeleted"] == []  # the stray members were not kept


def test_concurrent_registers_of_one_image(store, image_root):
    import subprocess
    import sys

    digest = put_image(store, [tar_layer({f"f{i}": b"x" * 100 for i in range(300)}), L2])
    code = ("import sys; from tests.image.conftest import make_store; "
            f"print(make_store({image_root!r}).register({digest!r}, sys.argv[1]))")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"racer:{i}"], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1].decode()[-500:] for r in results]
    assert len({r[0] for r in results}) == 1
    assert sorted(store.inspect("racer:0")["RepoTags"]) == ["racer:0", "racer:1", "racer:2"]
    assert [s for _, s in store.meta.q("SELECT chain_id, state FROM layers")] == ["ready", "ready"]


def test_image_without_layers(store, image_root):
    """FROM scratch + metadata only: no layers at all."""
    image_id = store.register(put_image(store, []), "empty:1")
    info = store.inspect("empty:1")
    assert info["RootFS"] == {"Type": "layers", "Layers": []} and info["Size"] == 0
    assert store.top_layer_id("empty:1") is None and store.layers_of("empty:1") == []
    for fmt in ("docker", "oci"):
        out = io.BytesIO()
        save(store, ["empty:1"], out, format=fmt)
        other = make_store(os.path.join(image_root, fmt))
        try:
            assert load(other, io.BytesIO(out.getvalue())) == ["Loaded image: empty:1"]
            assert other.inspect("empty:1")["Id"] == image_id
        finally:
            other.close()
    assert store.remove("empty:1")[-1] == {"Deleted": image_id}


def test_on_the_vfs_driver(image_root):
    """The store is driver-agnostic: the same round trip on vfs (full copies, no OverlayFS)."""
    from cais.image.store import open_store

    store = open_store(os.path.join(image_root, "vfs"), "vfs")
    try:
        assert store.inspect(store.register(put_image(store, [L1, L2]), "app:1"))["GraphDriver"]["Name"] == "vfs"
        cid = "f" * 64
        store.add_container(cid, "app:1")
        store.driver.create_rw(cid, store.top_layer_id("app:1"))
        try:
            root = store.driver.mount(cid)
            with open(os.path.join(root, "added"), "w") as f:
                f.write("vfs\n")
            store.driver.unmount(cid)
            commit(store, cid, "app:2")
        finally:
            store.driver.remove_rw(cid)
            store.remove_container(cid)
        out = io.BytesIO()
        export_image(store, "app:2", out)
        files = members(out.getvalue())
        assert files["added"] == b"vfs\n" and files["etc/world"] == b"world\n" and "etc/hello" not in files
        assert [r for r in store.remove("app:1") if "Deleted" in r] == []  # app:2 is its child
    finally:
        store.close()
