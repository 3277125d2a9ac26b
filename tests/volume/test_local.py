"""The volume service and the local driver on a temporary root: real directories and mounts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cais.linux.mountinfo import is_mount_point
from cais.volume.errors import InvalidVolume, VolumeInUse, VolumeNotFound
from cais.volume.service import ANONYMOUS_LABEL, Volumes


@pytest.fixture
def vols(vo_dir: str):  # type: ignore[no-untyped-def]
    v = Volumes(os.path.join(vo_dir, "volumes"))
    yield v
    v.close()


def test_create_inspect_list(vols: Volumes) -> None:
    doc = vols.create("cais-vo-one", labels={"team": "a"})
    assert doc["Name"] == "cais-vo-one" and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Mountpoint"] == os.path.join(vols.root, "cais-vo-one", "_data")
    assert os.path.isdir(doc["Mountpoint"]) and doc["Labels"] == {"team": "a"} and doc["Options"] is None
    assert doc["CreatedAt"].startswith("20")
    assert vols.create("cais-vo-one") == doc  # same name, same driver: the existing volume
    generated = vols.create()["Name"]
    assert len(generated) == 64
    vols.create(anonymous=True)
    names = lambda **f: sorted(v["Name"] for v in vols.list({k: [x] for k, x in f.items()}))  # noqa: E731
    assert names(name="vo-o") == ["cais-vo-one"]
    assert names(label="team=a") == ["cais-vo-one"] and names(label="team=b") == []
    assert names(driver="local") == sorted(v["Name"] for v in vols.list())
    vols.use("cais-vo-one", "c" * 64)
    assert names(dangling="false") == ["cais-vo-one"]
    assert "cais-vo-one" not in names(dangling="true")
    with pytest.raises(InvalidVolume, match="invalid filter"):
        vols.list({"colour": ["red"]})
    with pytest.raises(InvalidVolume, match="invalid filter"):
        vols.list({"dangling": ["maybe"]})


@pytest.mark.parametrize("name, driver, options, message", [
    ("bad/name", None, None, "invalid characters"),
    ("-bad", None, None, "invalid characters"),
    ("..", None, None, "invalid characters"),
    ("cais-vo-x", "nfs-plugin", None, "plugin \"nfs-plugin\" not found"),
    ("cais-vo-x", None, {"colour": "red"}, 'invalid option: "colour"'),
    ("cais-vo-x", None, {"type": "tmpfs"}, 'missing required option: "device"'),
    ("cais-vo-x", None, {"o": "size=1m"}, "missing required option"),
    ("cais-vo-x", None, {"size": "10G"}, "quota"),
    ("cais-vo-x", None, {"type": "none", "device": "relative", "o": "bind"}, "absolute path"),
    ("cais-vo-x", None, {"type": "none", "device": "/cais-vo-nowhere", "o": "bind"}, "no such directory"),
    ("cais-vo-x", None, {"type": "tmpfs", "device": "tmpfs", "o": "size=bogus"}, "failed to mount"),
    ("cais-vo-x", None, {"type": "tmpfs", "device": "tmpfs", "o": "nr_inodes=-1x"}, "failed to mount"),
])
def test_bad_input_creates_nothing(vols: Volumes, name: str, driver: str | None, options: dict | None,
                                   message: str) -> None:
    with pytest.raises(InvalidVolume, match=message):
        vols.create(name, driver, options=options)
    assert vols.list() == []
    assert sorted(os.listdir(vols.root)) == ["metadata.db", "metadata.db-shm", "metadata.db-wal"]


def test_remove_in_use(vols: Volumes) -> None:
    vols.create("cais-vo-used")
    vols.use("cais-vo-used", "a" * 64)
    with pytest.raises(VolumeInUse, match="volume is in use"):
        vols.remove("cais-vo-used")
    vols.mount("cais-vo-used", "a" * 64)
    with pytest.raises(VolumeInUse, match="running"):
        vols.remove("cais-vo-used", force=True)  # never while a running container has it
    vols.unmount("cais-vo-used", "a" * 64)
    vols.remove("cais-vo-used", force=True)  # a stopped container's reference yields to force
    with pytest.raises(VolumeNotFound, match="no such volume"):
        vols.inspect("cais-vo-used")
    vols.remove("cais-vo-used", force=True)  # force ignores a missing volume, as docker


def test_prune_anonymous_then_all(vols: Volumes) -> None:
    vols.create("cais-vo-named")
    anon = vols.create(anonymous=True)
    assert anon["Labels"] == {ANONYMOUS_LABEL: ""}
    used = vols.create(anonymous=True)["Name"]
    vols.use(used, "b" * 64)
    with open(os.path.join(anon["Mountpoint"], "f"), "wb") as f:
        f.write(b"x" * 1000)
    result = vols.prune()
    assert result == {"VolumesDeleted": [anon["Name"]], "SpaceReclaimed": 1000}
    assert vols.prune({"all": ["true"], "label": ["nothing"]})["VolumesDeleted"] is None
    assert vols.prune({"all": ["true"]})["VolumesDeleted"] == ["cais-vo-named"]
    assert [v["Name"] for v in vols.list()] == [used]


def test_tmpfs_volume_mounted_while_used(vols: Volumes) -> None:
    doc = vols.create("cais-vo-tmp", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0700"})
    assert doc["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0700"}
    path = doc["Mountpoint"]
    assert not is_mount_point(path)
    vols.mount("cais-vo-tmp", "1" * 64)
    vols.mount("cais-vo-tmp", "2" * 64)
    assert is_mount_point(path)
    assert os.statvfs(path).f_blocks * os.statvfs(path).f_frsize == 1 << 20
    vols.unmount("cais-vo-tmp", "1" * 64)
    assert is_mount_point(path)  # still used by the second
    vols.unmount("cais-vo-tmp", "2" * 64)
    assert not is_mount_point(path)


def test_bind_volume_never_deletes_the_host_directory(vols: Volumes, vo_dir: str) -> None:
    host = os.path.join(vo_dir, "host")
    os.mkdir(host)
    with open(os.path.join(host, "precious"), "w") as f:
        f.write("keep me")
    doc = vols.create("cais-vo-bind", options={"type": "none", "device": host, "o": "bind"})
    vols.mount("cais-vo-bind", "c" * 64)
    with open(os.path.join(doc["Mountpoint"], "precious")) as f:
        assert f.read() == "keep me"
    # a crash leaves the mount behind; reconcile (no container runs) unmounts it, removal spares the host
    vols.reconcile(set(), set())
    assert not is_mount_point(doc["Mountpoint"])
    vols.remove("cais-vo-bind")
    assert os.path.exists(os.path.join(host, "precious"))


def test_metadata_survives_a_killed_process(vo_dir: str) -> None:
    root = os.path.join(vo_dir, "volumes")
    code = (f"from cais.volume.service import Volumes; import os; v = Volumes({root!r}); "
            "v.create('cais-vo-k', labels={'a': 'b'}); v.use('cais-vo-k', 'c' * 64); "
            "open(v.inspect('cais-vo-k')['Mountpoint'] + '/data', 'w').write('kept'); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], check=False)
    v = Volumes(root)
    try:
        assert v.inspect("cais-vo-k")["Labels"] == {"a": "b"}
        assert v.row("cais-vo-k").refs == ["c" * 64]
        with open(os.path.join(v.inspect("cais-vo-k")["Mountpoint"], "data")) as f:
            assert f.read() == "kept"
    finally:
        v.close()


def test_removal_interrupted_by_a_crash_is_finished_at_start(vo_dir: str) -> None:
    root = os.path.join(vo_dir, "volumes")
    v = Volumes(root)
    v.create("cais-vo-half")
    v.create("cais-vo-whole")
    v.close()
    os.rename(os.path.join(root, "cais-vo-half"), os.path.join(root, ".removing-cais-vo-half"))  # crash here
    v = Volumes(root)
    try:
        assert [d["Name"] for d in v.list()] == ["cais-vo-whole"]
        assert sorted(e for e in os.listdir(root) if not e.startswith("metadata.db")) == ["cais-vo-whole"]
    finally:
        v.close()
