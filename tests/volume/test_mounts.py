"""Mount specs parsed as docker's CLI and daemon parse them, and the OCI mounts they become."""

from __future__ import annotations

import os

import pytest

from cais.volume import mounts
from cais.volume.errors import InvalidVolume


def test_binds() -> None:
    mp = mounts.parse_bind("cais-vo-data:/data")
    assert (mp.type, mp.name, mp.destination, mp.rw, mp.mode, mp.copy_data) == \
        ("volume", "cais-vo-data", "/data", True, "z", True)
    mp = mounts.parse_bind("/srv/x:/x:ro,rshared")
    assert (mp.type, mp.source, mp.rw, mp.propagation, mp.mode, mp.create_source) == \
        ("bind", "/srv/x", False, "rshared", "ro,rshared", True)
    assert mounts.parse_bind("/srv/x:/x").propagation == "rprivate"
    assert mounts.parse_bind("vol:/x:nocopy").copy_data is False
    anon = mounts.parse_bind("/just/here")
    assert (anon.type, anon.name, anon.destination) == ("volume", "", "/just/here")
    assert mounts.parse_bind("/a:/b/c/:Z").destination == "/b/c"


@pytest.mark.parametrize("spec, message", [
    ("", "invalid volume specification"),
    ("/ctr:ro", "invalid volume specification"),
    ("a:b:c:d", "invalid volume specification"),
    ("vol:relative", "must be absolute"),
    ("vol:/", "can't be '/'"),
    ("/host:/ctr:bogus", "invalid mode"),
    ("/host:/ctr:ro,rw", "invalid volume specification"),
    ("/host:/ctr:nocopy", "VolumeOptions"),
    ("vol:/ctr:rshared", "BindOptions"),
    ("bad/name:/ctr", "invalid characters"),
    ("-x:/ctr", "invalid characters"),
    ("/host/../etc:/ctr", "'..' is not allowed"),
    ("vol:/ctr/../etc", "'..' is not allowed"),
])
def test_bad_binds(spec: str, message: str) -> None:
    with pytest.raises(InvalidVolume, match=message):
        mounts.parse_bind(spec)


def test_mounts(vo_dir: str) -> None:
    mp = mounts.parse_mount({"Type": "bind", "Source": vo_dir, "Target": "/x", "ReadOnly": True,
                             "BindOptions": {"Propagation": "rslave"}})
    assert (mp.type, mp.source, mp.rw, mp.propagation, mp.create_source) == ("bind", vo_dir, False, "rslave", False)
    mp = mounts.parse_mount({"Type": "volume", "Source": "v1", "Target": "/v",
                             "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                               "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs"}}}})
    assert (mp.name, mp.copy_data, mp.labels, mp.driver_options) == ("v1", False, {"a": "b"}, {"type": "tmpfs"})
    mp = mounts.parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 4 << 20, "Mode": 0o1770}})
    assert mp.tmpfs_options == "size=4m,mode=1770"
    assert mounts.to_oci(mp) == {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["noexec", "nosuid", "nodev", "size=4m", "mode=1770"]}


@pytest.mark.parametrize("m, message", [
    ({"Type": "bind", "Source": "/cais-vo-does-not-exist", "Target": "/x"}, "bind source path does not exist"),
    ({"Type": "bind", "Target": "/x"}, "Source must not be empty"),
    ({"Type": "bind", "Source": "/", "Target": "x"}, "must be absolute"),
    ({"Type": "volume", "Source": "v", "Target": ""}, "Target must not be empty"),
    ({"Type": "volume", "Source": "a/b", "Target": "/x"}, "invalid characters"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"}, "Source must not be specified"),
    ({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}}, "BindOptions"),
    ({"Type": "npipe", "Target": "/x"}, "mount type unknown"),
    ({"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"Propagation": "weird"}}, "propagation"),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": "big"}}, "SizeBytes"),
    ({"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a/../../x"}}, "back traversals"),
    ({"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "/etc"}}, "back traversals"),
    ("nonsense", "expected an object"),
])
def test_bad_mounts(m: object, message: str) -> None:
    with pytest.raises(InvalidVolume, match=message):
        mounts.parse_mount(m)


def test_tmpfs_and_volumes_from() -> None:
    mp = mounts.parse_tmpfs("/run", "size=1m,exec")
    assert mounts.to_oci(mp)["options"] == ["noexec", "nosuid", "nodev", "size=1m", "exec"]
    with pytest.raises(InvalidVolume, match="invalid tmpfs option"):
        mounts.parse_tmpfs("/run", "bogus=1")
    with pytest.raises(InvalidVolume, match="absolute"):
        mounts.parse_tmpfs("run", "")
    assert mounts.parse_volumes_from("c1") == ("c1", "rw")
    assert mounts.parse_volumes_from("c1:ro") == ("c1", "ro")
    with pytest.raises(InvalidVolume, match="invalid mode"):
        mounts.parse_volumes_from("c1:xx")


def test_bind_oci() -> None:
    mp = mounts.parse_bind("/srv:/srv:ro,rslave")
    assert mounts.to_oci(mp) == {"destination": "/srv", "type": "bind", "source": "/srv",
                                 "options": ["rbind", "rslave", "ro"]}


def test_bind_source_rules(vo_dir: str) -> None:
    missing = mounts.parse_bind(f"{vo_dir}/new/dir:/x")
    mounts.check_bind_source(missing)  # -v creates a missing host directory
    assert os.path.isdir(f"{vo_dir}/new/dir")
    with open(f"{vo_dir}/file", "w") as f:
        f.write("x")
    with pytest.raises(InvalidVolume, match="not a directory"):
        mounts.check_bind_source(mounts.parse_bind(f"{vo_dir}/file/sub:/x"))
    with pytest.raises(InvalidVolume, match="cannot mount file"):
        mounts.check_target_kind(f"{vo_dir}/file", "/etc", True)
    with pytest.raises(InvalidVolume, match="cannot mount directory"):
        mounts.check_target_kind(vo_dir, "/etc/passwd", False)
