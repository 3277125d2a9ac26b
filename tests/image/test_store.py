"""The image store on a real storage driver: register, inspect, tag, rmi, prune, gc."""

from __future__ import annotations

import os

import pytest

from cais.image.bootstrap import bootstrap_busybox
from cais.image.content import digest_bytes
from cais.image.store import ImageConflict, ImageNotFound, InvalidImage
from tests.image.builders import put_image, tar_layer
from tests.image.conftest import make_store

L1 = tar_layer({"etc/": None, "etc/hello": b"hello\n", "bin/": None, "bin/sh": "/bin/busybox"})
L2 = tar_layer({"etc/.wh.hello": b"", "etc/world": b"world\n"})
L3 = tar_layer({"extra": b"x" * 1000})


def state(store):
    """Everything the store knows, to compare before/after a failed operation."""
    return (store.meta.q("SELECT * FROM images"), store.meta.q("SELECT chain_id, state FROM layers"),
            store.meta.q("SELECT * FROM refs"), sorted(os.listdir(store.driver.root)))


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_register_and_inspect(store, compression):
    digest = put_image(store, [L1, L2], compression, labels={"a": "1"})
    image_id = store.register(digest, "example.com/app:v1")
    info = store.inspect("example.com/app:v1")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["example.com/app:v1"]
    assert info["RepoDigests"] == [f"example.com/app@{digest}"]
    assert info["RootFS"] == {"Type": "layers", "Layers": [digest_bytes(L1), digest_bytes(L2)]}
    assert (info["Os"], info["Architecture"], info["Config"]["Cmd"]) == ("linux", "amd64", ["sh"])
    assert info["Created"] == "2024-01-02T03:04:05.123456789Z"
    assert info["Size"] == len("hello\n") + len("world\n")
    assert store.resolve(image_id[7:19]) == image_id and store.resolve(image_id) == image_id
    assert store.resolve(f"example.com/app@{digest}") == image_id
    [summary] = store.list()
    assert summary["Created"] == 1704164645 and summary["Labels"] == {"a": "1"}
    history = store.history(image_id)
    assert [h["CreatedBy"] for h in history] == ["layer 1", "layer 0"]
    assert history[0]["Id"] == image_id and history[1]["Id"] == "<missing>"
    assert history[0]["Tags"] == ["example.com/app:v1"]
    layers = store.layers_of(image_id)
    assert [x["DiffID"] for x in layers] == [digest_bytes(L1), digest_bytes(L2)]
    assert all(store.driver.has_layer(x["ChainID"][7:]) for x in layers)
    # registering again is a no-op; a second image shares the bottom layer
    assert store.register(digest) == image_id
    other = store.register(put_image(store, [L1, L3], compression), "other")
    usage = store.disk_usage()
    shared = {i["Id"]: i["SharedSize"] for i in usage["Images"]}
    assert shared[image_id] == shared[other] == len("hello\n")


def test_bootstrap_is_reproducible(image_root, store, busybox_dir):
    image_id = bootstrap_busybox(store)
    other = make_store(os.path.join(image_root, "second"))
    try:
        assert bootstrap_busybox(other, "mybox:1") == image_id
    finally:
        other.close()
    info = store.inspect("busybox")
    assert info["RepoTags"] == ["busybox:latest"] and info["Config"]["Cmd"] == ["sh"]
    rw = "cais-img-bb"
    store.driver.create_rw(rw, store.layers_of("busybox")[-1]["ChainID"][7:])
    try:
        root = store.driver.mount(rw)
        try:
            assert os.readlink(os.path.join(root, "bin/sh")) == "/bin/busybox"
            assert os.stat(os.path.join(root, "tmp")).st_mode & 0o7777 == 0o1777
            assert os.access(os.path.join(root, "bin/busybox"), os.X_OK)
        finally:
            store.driver.unmount(rw)
    finally:
        store.driver.remove_rw(rw)


def test_wrong_diff_id_registers_nothing(store):
    before = state(store)
    digest = put_image(store, [L1, L2], diff_ids=[digest_bytes(L1), digest_bytes(L3)])
    with pytest.raises(InvalidImage, match=r"unpacks to sha256:\w+, but the image config says"):
        store.register(digest, "bad")
    after = state(store)
    assert after[0] == before[0] == [] and after[2] == []
    # the good bottom layer may stay (it is valid and reusable); the bad one is gone
    assert [row for row in after[1] if row[1] != "ready"] == []
    assert store.gc()["LayersDeleted"]
    assert state(store)[1] == []


def test_missing_blob_and_bad_manifest(store):
    digest = put_image(store, [L1, L2], skip_blobs=(1,))
    with pytest.raises(InvalidImage, match=r"^layer blob sha256:\w+ is not in the content store$"):
        store.register(digest)
    with pytest.raises(InvalidImage, match="is not in the content store"):
        store.register("sha256:" + "0" * 64)
    bad = store.content.put(b'{"schemaVersion": 2, "layers": "x", "config": {}}')
    with pytest.raises(InvalidImage, match="^manifest: "):
        store.register(bad)
    with pytest.raises(InvalidImage, match="invalid reference format"):
        store.register(put_image(store, [L1]), "Bad:Ref")
    assert store.list() == []


def test_hostile_layer_is_refused_cleanly(store):
    evil = tar_layer({"../escape": b"x"})
    with pytest.raises(InvalidImage, match="failed to unpack layer"):
        store.register(put_image(store, [evil]), "evil")
    assert store.list() == [] and store.meta.layers() == []


def test_not_found_messages(store):
    with pytest.raises(ImageNotFound, match="^No such image: busybox:latest$"):
        store.inspect("busybox")
    with pytest.raises(ImageNotFound, match="^No such image: abcdef:latest$"):
        store.inspect("abcdef")
    with pytest.raises(InvalidImage, match="invalid reference format"):
        store.inspect("UPPER")


def test_tag_and_rmi_like_docker(store):
    image_id = store.register(put_image(store, [L1, L2]), "app:1")
    store.tag("app:1", "app:2")
    store.tag(image_id, "other/app")
    assert sorted(store.inspect(image_id)["RepoTags"]) == ["app:1", "app:2", "other/app:latest"]
    with pytest.raises(InvalidImage, match="refusing to create a tag with a digest reference"):
        store.tag("app:1", "app@sha256:" + "a" * 64)
    assert store.remove("app:2") == [{"Untagged": "app:2"}]
    with pytest.raises(ImageConflict, match=r"^conflict: unable to delete \w{12} \(must be forced\) - image is "
                                            r"referenced in multiple repositories$"):
        store.remove(image_id[7:19])
    store.add_container("c" * 64, "app:1")
    with pytest.raises(ImageConflict, match=r'^conflict: unable to remove repository reference "app:1" \(must force\)'
                                            r" - container cccccccccccc is using its referenced image"):
        store.remove("other/app")  # with two tags left it is a plain untag: allowed
        store.remove("app:1")
    store.set_container_running("c" * 64, True)
    with pytest.raises(ImageConflict, match=r"\(cannot be forced\) - image is being used by running container ccc"):
        store.remove(image_id, force=True)
    store.set_container_running("c" * 64, False)
    # forced: the last tag goes, then the image; its layers stay while the container needs them
    records = store.remove("app:1", force=True)
    assert records[0] == {"Untagged": "app:1"} and records[1]["Untagged"].startswith("app@sha256:")
    assert records[2:] == [{"Deleted": image_id}]
    assert store.list() == [] and len(store.meta.layers()) == 2
    store.remove_container("c" * 64)
    assert store.gc()["LayersDeleted"] == list(reversed(_chains(L1, L2)))
    assert store.meta.layers() == [] and [d for d, _ in store.content.walk()] == []


def test_rmi_by_id_deletes_layers_and_blobs(store):
    image_id = store.register(put_image(store, [L1, L2]), "app:1")
    records = store.remove(image_id)
    assert records == [{"Untagged": "app:1"}, {"Untagged": records[1]["Untagged"]}, {"Deleted": image_id},
                       *({"Deleted": c} for c in reversed(_chains(L1, L2)))]
    assert store.list() == [] and store.meta.layers() == []
    assert [d for d, _ in store.content.walk()] == []  # its blobs went with it


def _chains(*layers):
    from cais.image.config import chain_ids
    return chain_ids([digest_bytes(x) for x in layers])


def test_rmi_keeps_shared_layers_and_digest_refs(store):
    digest = put_image(store, [L1, L2])
    a = store.register(digest, "app:1")
    b = store.register(put_image(store, [L1, L3]), "app:2")
    # untagging the only tag of a repository also drops its digest refs (docker's cleanup)
    assert store.remove("app:1") == [{"Untagged": "app:1"}, {"Untagged": f"app@{digest}"},
                                      {"Deleted": a}, {"Deleted": _chains(L1, L2)[1]}]
    assert store.driver.has_layer(_chains(L1)[0][7:])
    assert store.inspect(b)["RepoTags"] == ["app:2"]


def test_prune(store):
    old = store.register(put_image(store, [L1], labels={"keep": "no"}, created="2001-01-01T00:00:00Z"))
    new = store.register(put_image(store, [L2], labels={"keep": "yes"}), "tagged")
    dangling_new = store.register(put_image(store, [L3]))
    assert [i["RepoTags"] for i in store.list(filters={"dangling": ["true"]})] == [["<none>:<none>"]] * 2
    out = store.prune({"until": ["2010-01-01T00:00:00Z"]})
    assert {"Deleted": old} in out["ImagesDeleted"] and out["SpaceReclaimed"] == len(b"hello\n")
    store.add_container("d" * 64, dangling_new)
    assert store.prune()["ImagesDeleted"] is None  # the other dangling one is in use
    store.remove_container("d" * 64)
    assert store.prune({"label!": ["keep"]})["ImagesDeleted"]
    assert store.prune({"dangling": ["false"], "label": ["keep=no"]})["ImagesDeleted"] is None
    out = store.prune({"dangling": ["false"], "label": ["keep=yes"]})
    assert {"Untagged": "tagged:latest"} in out["ImagesDeleted"] and {"Deleted": new} in out["ImagesDeleted"]
    assert store.list() == []


def test_gc_removes_orphans(store):
    store.register(put_image(store, [L1]), "keep")
    orphan = store.content.put(b"orphan blob")
    half = put_image(store, [L2])  # blobs present, never registered
    out = store.gc()
    assert orphan in out["BlobsDeleted"] and half in out["BlobsDeleted"]
    assert store.inspect("keep")  # still fine
    assert store.gc(min_age=3600) == {"LayersDeleted": [], "BlobsDeleted": [], "SpaceReclaimed": 0}


def test_register_index_picks_platform(store):
    import json

    from cais.image.manifest import OCI_INDEX
    from cais.image.platform import Platform, host_platform

    amd = put_image(store, [L1], extra_config={"architecture": "amd64"})
    arm = put_image(store, [L2], extra_config={"architecture": "arm64", "variant": "v8"})
    entries = [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": d,
                "size": store.content.size(d), "platform": p} for d, p in (
        (amd, {"os": "linux", "architecture": "amd64"}), (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}))]
    index = store.content.put(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())
    if host_platform().architecture == "amd64":
        image_id = store.register(index, "multi:1")
        info = store.inspect("multi:1")
        assert info["Architecture"] == "amd64" and info["RepoDigests"] == [f"multi@{index}"]
        assert store.resolve(f"multi:1@{index}") == image_id  # tag+digest: looked up by digest
    arm_id = store.register(index, "multi:arm", platform=Platform("linux", "arm64"))
    info = store.inspect(arm_id)
    assert (info["Architecture"], info["Variant"]) == ("arm64", "v8")
    assert store.top_layer_id(arm_id) == digest_bytes(L2)[7:]
    assert [x["RefCount"] for x in store.layers_of(arm_id)] == [1]
    with pytest.raises(InvalidImage, match="no matching manifest for linux/s390x in the manifest list entries"):
        store.register(index, platform=Platform("linux", "s390x"))


def test_unusable_metadata_is_a_clear_error(image_root):
    from cais.image.store import ImageError

    os.makedirs(os.path.join(image_root, "bad", "image"))
    with open(os.path.join(image_root, "bad", "image", "metadata.db"), "wb") as f:
        f.write(b"this is not a database" * 100)
    with pytest.raises(ImageError, match="^cannot open the image metadata: file is not a database$"):
        make_store(os.path.join(image_root, "bad"))


def test_list_filters(store):
    a = store.register(put_image(store, [L1], created="2020-01-01T00:00:00Z"), "team/a:1")
    b = store.register(put_image(store, [L2], created="2021-01-01T00:00:00Z", labels={"x": "1"}), "team/b:1")
    c = store.register(put_image(store, [L3], created="2022-01-01T00:00:00Z"))

    def ids(**filters):
        return [i["Id"] for i in store.list(filters=filters)]

    assert ids() == [c, b, a]
    assert ids(reference=["team/*"]) == [b, a] and ids(reference=["team/a:1"]) == [a]
    assert ids(before=["team/b:1"]) == [a] and ids(since=["team/a:1"]) == [c, b]
    assert ids(label=["x"]) == [b] and ids(label=["x=2"]) == []
    assert ids(dangling=["true"]) == [c] and ids(dangling=["false"]) == [b, a]
    with pytest.raises(InvalidImage, match="invalid filter 'dangling=maybe'"):
        ids(dangling=["maybe"])
    assert store.prune({"until": ["1h"], "dangling": ["false"]})["ImagesDeleted"]  # all are older than an hour
    assert store.list() == []
    with pytest.raises(InvalidImage, match="invalid filter 'until=soon'"):
        store.prune({"until": ["soon"]})


def test_rmi_does_not_wait_for_a_pull(store):
    """rmi while a pull/load holds the store: layers go at once, shared blobs are left to gc."""
    image_id = store.register(put_image(store, [L1, L2]), "app:1")
    with store.hold():
        records = store.remove("app:1")
        assert {"Deleted": image_id} in records and store.meta.layers() == []
        assert list(store.content.walk())  # blobs kept: the holder may be about to use them
    assert len(store.gc()["BlobsDeleted"]) == 4  # manifest, config, two layers


def test_register_and_rmi_race_stays_consistent(image_root):
    """Two stores (two connections) register and remove images sharing a layer, concurrently."""
    import threading

    stores = [make_store(image_root), make_store(image_root)]
    images = [[L1], [L1, L2]]
    errors: list[BaseException] = []

    def churn(s, layers, tag):
        try:
            for _ in range(15):
                with s.hold():  # as a pull does: fetch the blobs, register
                    s.register(put_image(s, layers), tag)
                s.remove(tag)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(s, layers, f"race:{i}")) for i, (s, layers) in
               enumerate(zip(stores, images, strict=True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        s = stores[0]
        for layers in images:  # afterwards both still register and their layers are really there
            image_id = s.register(put_image(s, layers))
            assert all(s.driver.has_layer(x["ChainID"][7:]) for x in s.layers_of(image_id))
        assert {state for _, state in s.meta.q("SELECT chain_id, state FROM layers")} == {"ready"}
    finally:
        for s in stores:
            s.close()


def test_rmi_skips_a_layer_an_inflight_register_pinned(image_root):
    """A register has found all its layers on disk (another image's) and is about to record its
    image when an rmi of that other image comes: the layers stay (pinned), the register commits at
    the first attempt, and the layers go with the last image that uses them."""
    import threading

    store, other = make_store(image_root), make_store(image_root)  # two connections, as two processes
    try:
        first = store.register(put_image(store, [L1, L2]), "a:1")
        chain = [x["ChainID"] for x in store.layers_of(first)]
        digest = put_image(store, [L1, L2], labels={"another": "config"})
        reached, go = threading.Event(), threading.Event()
        pin_ready = store._pin_ready

        def pin_then_wait(*args):  # the window between finding the layers and recording the image
            pinned = pin_ready(*args)
            reached.set()
            go.wait(30)
            return pinned

        store._pin_ready = pin_then_wait
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(store.register(digest, "b:1")))
        t.start()
        try:
            assert reached.wait(30)
            assert [r["Deleted"] for r in other.remove("a:1") if "Deleted" in r] == [first]  # no layer
            assert [other.meta.layer(c).state for c in chain] == ["ready", "ready"]
        finally:
            go.set()
            t.join(30)
        [second] = result
        assert [x["ChainID"] for x in store.layers_of(second)] == chain
        assert all(store.driver.has_layer(c[7:]) for c in chain) and store.meta.q("SELECT * FROM layer_pins") == []
        records = other.remove("b:1")
        assert {"Deleted": chain[0]} in records and store.meta.layers() == []
    finally:
        store.close()
        other.close()


def test_pins_of_a_crashed_register_are_dropped(store):
    """Pins a register left behind (it crashed) protect nothing once nobody holds the store."""
    image_id = store.register(put_image(store, [L1]), "a:1")
    [chain] = [x["ChainID"] for x in store.layers_of(image_id)]
    with store.meta.tx() as db:
        db.execute("INSERT INTO layer_pins VALUES ('crashed', ?)", (chain,))
    with store.hold():  # a register may be in flight: the pin counts
        assert [r["Deleted"] for r in store.remove("a:1") if "Deleted" in r] == [image_id]
    assert store.meta.layer(chain) is not None
    assert store.gc()["LayersDeleted"] == [chain]  # nobody holds the store now
    image_id = store.register(put_image(store, [L1]), "a:1")
    with store.meta.tx() as db:
        db.execute("INSERT INTO layer_pins VALUES ('crashed', ?)", (chain,))
    assert {"Deleted": chain} in store.remove("a:1")
    assert store.meta.q("SELECT * FROM layer_pins") == []


def test_odd_config_values_do_not_crash(store):
    digest = put_image(store, [L1], created=123, labels=["not", "a", "map"],
                       extra_config={"history": [{"created": 5, "created_by": "x"}]})
    image_id = store.register(digest, "odd")
    assert store.list()[0]["Created"] == 0 and store.list()[0]["Labels"] is None
    assert store.history("odd")[0]["Created"] == 0 and store.inspect("odd")["Id"] == image_id
