"""Volumes, binds and tmpfs in real containers, through the real docker CLI against caisd."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from tests.caisd import Caisd
from tests.volume.conftest import docker_fails, docker_ok


def _name(kind: str) -> str:
    return f"cais-vo-{kind}-{uuid.uuid4().hex[:8]}"


def _rm(d: Caisd, *names: str) -> None:
    d.docker("rm", "-f", *names, check=False)


def test_data_outlives_its_container(daemon: Caisd) -> None:
    vol, first = _name("vol"), _name("c")
    since = str(int(time.time()) - 1)
    try:
        docker_ok(daemon, "run", "--name", first, "-v", f"{vol}:/data", "busybox",
                  "sh", "-c", "echo kept > /data/note && chown 1000:1000 /data/note")
        docker_ok(daemon, "rm", first)
        out = docker_ok(daemon, "run", "--rm", "--mount", f"source={vol},target=/again", "busybox",
                        "sh", "-c", "cat /again/note; stat -c %u:%g /again/note")
        assert out.split() == ["kept", "1000:1000"]
        doc = json.loads(docker_ok(daemon, "volume", "inspect", vol))[0]
        assert doc["Mountpoint"].startswith(daemon.data_root + "/volumes/")
        events = docker_ok(daemon, "events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                           "type=volume", "--filter", f"volume={vol}", "--format", "{{.Action}}").split()
        assert events == ["create", "mount", "unmount", "mount", "unmount"]
    finally:
        _rm(daemon, first)
        daemon.docker("volume", "rm", vol, check=False)


def test_copy_up_equals_the_image(daemon: Caisd) -> None:
    vol = _name("etc")
    try:
        listing = "find /etc | sort | xargs stat -c '%n %a %u %g %s'"
        image = docker_ok(daemon, "run", "--rm", "busybox", "sh", "-c", listing)
        copied = docker_ok(daemon, "run", "--rm", "-v", f"{vol}:/etc", "busybox", "sh", "-c", listing)
        # /etc/hostname, hosts and resolv.conf are the engine's binds, on top of both
        assert copied == image
        files = subprocess.run(["find", ".", "-printf", "%P %m %U %G %s\n"], capture_output=True, text=True,
                               cwd=json.loads(docker_ok(daemon, "volume", "inspect", vol))[0]["Mountpoint"],
                               check=True).stdout
        assert "passwd 644 0 0" in files
        nocopy = _name("nocopy")
        out = docker_ok(daemon, "run", "--rm", "-v", f"{nocopy}:/etc:nocopy", "busybox", "ls", "/etc")
        assert out.split() == ["hostname", "hosts", "resolv.conf"]  # only the engine's own files
        daemon.docker("volume", "rm", nocopy, check=False)
    finally:
        daemon.docker("volume", "rm", vol, check=False)


def test_image_volume_and_anonymous_volumes(daemon: Caisd) -> None:
    base, image, keep, gone = _name("base"), _name("img"), _name("keep"), _name("gone")
    try:
        docker_ok(daemon, "run", "--name", base, "busybox", "sh", "-c", "mkdir -p /srv/data && echo seed > /srv/data/s")
        docker_ok(daemon, "commit", "--change", 'VOLUME ["/srv/data"]', base, image)
        docker_ok(daemon, "run", "--name", keep, "-v", "/scratch", image, "cat", "/srv/data/s")
        mounts = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", keep))
        assert sorted(m["Destination"] for m in mounts) == ["/scratch", "/srv/data"]
        for m in mounts:
            assert m["Type"] == "volume" and len(m["Name"]) == 64 and m["Driver"] == "local" and m["RW"]
            assert set(m) == {"Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation"}
        by_dest = {m["Destination"]: m for m in mounts}
        with open(os.path.join(by_dest["/srv/data"]["Source"], "s")) as f:
            assert f.read() == "seed\n"  # copied up from the image
        docker_ok(daemon, "rm", keep)  # without -v anonymous volumes stay
        names = docker_ok(daemon, "volume", "ls", "-q").split()
        assert all(m["Name"] in names for m in mounts)
        for m in mounts:
            docker_ok(daemon, "volume", "rm", m["Name"])
        out = docker_ok(daemon, "run", "--rm", "--name", gone, image, "sh", "-c", "ls /srv/data")
        assert out.strip() == "s"
        docker_ok(daemon, "run", "--name", gone, "-v", "/x", image, "true")
        mounts = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", gone))
        docker_ok(daemon, "rm", "-v", gone)
        left = docker_ok(daemon, "volume", "ls", "-q").split()
        assert not any(m["Name"] in left for m in mounts)
    finally:
        _rm(daemon, base, keep, gone)
        daemon.docker("rmi", image, check=False)


def test_rm_v_keeps_volumes_another_container_uses(daemon: Caisd) -> None:
    a, b = _name("a"), _name("b")
    try:
        docker_ok(daemon, "create", "--name", a, "-v", "/shared", "busybox", "true")
        docker_ok(daemon, "create", "--name", b, "--volumes-from", a, "busybox", "true")
        name = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", a))[0]["Name"]
        docker_ok(daemon, "rm", "-v", a)
        assert name in docker_ok(daemon, "volume", "ls", "-q").split()
        docker_ok(daemon, "rm", "-v", b)
        assert name not in docker_ok(daemon, "volume", "ls", "-q").split()
    finally:
        _rm(daemon, a, b)


def test_volumes_from_read_only(daemon: Caisd, vo_dir: str) -> None:
    src, vol = _name("src"), _name("vol")
    try:
        docker_ok(daemon, "create", "--name", src, "-v", f"{vol}:/v", "-v", f"{vo_dir}:/ro-bind:ro", "busybox", "true")
        out = docker_ok(daemon, "run", "--rm", "--volumes-from", src, "busybox",
                        "sh", "-c", "echo w > /v/f && cat /v/f; touch /ro-bind/x 2>&1; true")
        assert "w" in out and "Read-only file system" in out
        err = docker_ok(daemon, "run", "--rm", "--volumes-from", f"{src}:ro", "busybox",
                        "sh", "-c", "touch /v/g 2>&1; cat /v/f")
        assert "Read-only file system" in err and "w" in err
        # :rw does not make a read-only mount writable
        out = docker_ok(daemon, "run", "--rm", "--volumes-from", f"{src}:rw", "busybox", "sh", "-c",
                        "touch /ro-bind/y 2>&1; true")
        assert "Read-only file system" in out
        assert not os.path.exists(os.path.join(vo_dir, "y"))
        assert "No such container" in docker_fails(daemon, "run", "--rm", "--volumes-from", "cais-vo-nobody",
                                                   "busybox", "true")
    finally:
        _rm(daemon, src)
        daemon.docker("volume", "rm", vol, check=False)


def test_binds(daemon: Caisd, vo_dir: str) -> None:
    with open(os.path.join(vo_dir, "in"), "w") as f:
        f.write("from host")
    out = docker_ok(daemon, "run", "--rm", "-v", f"{vo_dir}:/h", "busybox", "sh", "-c", "cat /h/in; echo back > /h/out")
    assert out == "from host"
    with open(os.path.join(vo_dir, "out")) as f:
        assert f.read() == "back\n"
    err = docker_ok(daemon, "run", "--rm", "-v", f"{vo_dir}:/h:ro", "busybox", "sh", "-c", "echo x > /h/no 2>&1; true")
    assert not os.path.exists(os.path.join(vo_dir, "no"))
    err = docker_ok(daemon, "run", "--rm", "--mount", f"type=bind,source={vo_dir},target=/h,readonly", "busybox",
                    "sh", "-c", "touch /h/no 2>&1; true")
    assert "Read-only file system" in err and not os.path.exists(os.path.join(vo_dir, "no"))
    # -v creates a missing host directory; --mount refuses it
    docker_ok(daemon, "run", "--rm", "-v", f"{vo_dir}/made/here:/m", "busybox", "true")
    assert os.path.isdir(os.path.join(vo_dir, "made", "here"))
    err = docker_fails(daemon, "run", "--rm", "--mount", f"type=bind,source={vo_dir}/absent,target=/m", "busybox",
                       "true")
    assert "bind source path does not exist" in err
    assert not os.path.exists(os.path.join(vo_dir, "absent"))
    # a single file bound over a file
    docker_ok(daemon, "run", "--rm", "-v", f"{vo_dir}/in:/etc/motd:ro", "busybox", "cat", "/etc/motd")


@pytest.mark.parametrize("mode, visible", [("rshared", True), ("rslave", True), ("rprivate", False)])
def test_propagation(daemon: Caisd, vo_dir: str, mode: str, visible: bool) -> None:
    src = os.path.join(vo_dir, "src")
    os.makedirs(os.path.join(src, "later"))
    subprocess.run(["mount", "--bind", src, src], check=True)
    subprocess.run(["mount", "--make-shared", src], check=True)
    name = _name("prop")
    try:
        docker_ok(daemon, "run", "-d", "--name", name, "-v", f"{src}:/p:{mode}", "busybox", "sleep", "60")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cais-vo-later", os.path.join(src, "later")],
                       check=True)
        with open(os.path.join(src, "later", "marker"), "w") as f:
            f.write("propagated")
        out = docker_ok(daemon, "exec", name, "sh", "-c", "cat /p/later/marker 2>/dev/null; true")
        assert (out == "propagated") is visible
        mounts = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", name))
        assert mounts == [{"Type": "bind", "Source": src, "Destination": "/p", "Mode": mode, "RW": True,
                           "Propagation": mode}]
    finally:
        _rm(daemon, name)
        subprocess.run(["umount", os.path.join(src, "later")], check=False)
        subprocess.run(["umount", src], check=False)


def test_shared_propagation_needs_a_shared_source(daemon: Caisd, vo_dir: str) -> None:
    err = docker_fails(daemon, "run", "--rm", "-v", f"{vo_dir}:/p:rshared", "busybox", "true")
    assert "not a shared mount" in err


def test_tmpfs_size_enforced(daemon: Caisd) -> None:
    for flags in (["--tmpfs", "/t:size=1m"], ["--mount", "type=tmpfs,target=/t,tmpfs-size=1048576,tmpfs-mode=1770"]):
        out = docker_ok(daemon, "run", "--rm", *flags, "busybox", "sh", "-c",
                        "dd if=/dev/zero of=/t/f bs=1k count=2048 2>&1; ls -l /t/f; stat -c %a /t; grep ' /t ' "
                        "/proc/mounts")
        assert "No space left on device" in out
        assert " 1048576 " in out  # exactly 1 MiB written, no more
        assert "tmpfs /t tmpfs rw,nosuid,nodev,noexec" in out
        if "--mount" in flags:
            assert "1770" in out


def test_volume_in_use_cannot_be_removed(daemon: Caisd) -> None:
    vol, name = _name("busy"), _name("user")
    try:
        docker_ok(daemon, "run", "-d", "--name", name, "-v", f"{vol}:/v", "busybox", "sleep", "60")
        assert "volume is in use" in docker_fails(daemon, "volume", "rm", vol)
        assert "volume is in use" in docker_fails(daemon, "volume", "rm", "-f", vol)
        docker_ok(daemon, "stop", "-t", "0", name)
        assert "volume is in use" in docker_fails(daemon, "volume", "rm", vol)
        assert vol in docker_ok(daemon, "volume", "ls", "-q", "--filter", "dangling=false").split()
        docker_ok(daemon, "rm", name)
        assert vol in docker_ok(daemon, "volume", "ls", "-q", "--filter", "dangling=true").split()
        docker_ok(daemon, "volume", "rm", vol)
    finally:
        _rm(daemon, name)
        daemon.docker("volume", "rm", vol, check=False)


@pytest.mark.parametrize("args, message", [
    (["-v", "bad/name:/x"], "includes invalid characters"),
    (["-v", "cais-vo-ok:relative"], "must be absolute"),
    (["-v", "/tmp/../etc:/x"], "'..' is not allowed"),
    (["-v", "cais-vo-ok:/x/../y"], "'..' is not allowed"),
    (["-v", "/etc/passwd/sub:/x"], "not a directory"),
    (["-v", "/etc/passwd:/etc"], "cannot mount file"),
    (["-v", "/tmp:/etc/passwd"], "cannot mount directory"),
    (["--mount", "type=volume,source=cais-vo-ok,target=/x,volume-driver=cais-vo-nodriver"], "not found"),
    (["--mount", "type=volume,source=cais-vo-ok,target=/x,volume-opt=colour=red"], "invalid option"),
    (["--mount", "type=tmpfs,target=/x,source=y"], "must not be specified"),
    (["--tmpfs", "/x:bogus=1"], "invalid tmpfs option"),
    (["-v", "cais-vo-ok:/x", "-v", "cais-vo-ok2:/x"], "Duplicate mount point"),
])
def test_bad_input_clear_errors_nothing_created(daemon: Caisd, args: list[str], message: str) -> None:
    before_volumes = docker_ok(daemon, "volume", "ls", "-q")
    before_containers = docker_ok(daemon, "ps", "-aq")
    name = _name("bad")
    err = docker_fails(daemon, "run", "--name", name, *args, "busybox", "true")
    assert message in err
    # errors found at create leave nothing; those found at start (file over dir) leave only the container
    daemon.docker("rm", "-f", name, check=False)
    assert docker_ok(daemon, "volume", "ls", "-q") == before_volumes
    assert docker_ok(daemon, "ps", "-aq") == before_containers


def test_volume_subpath(daemon: Caisd, vo_dir: str) -> None:
    vol = _name("sub")
    try:
        docker_ok(daemon, "run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c",
                  f"mkdir -p /v/app/conf && echo sub > /v/app/conf/f && ln -s {vo_dir} /v/escape && "
                  "ln -s app /v/alias")
        out = docker_ok(daemon, "run", "--rm", "--mount", f"source={vol},target=/c,volume-subpath=app/conf",
                        "busybox", "cat", "/c/f")
        assert out == "sub\n"
        for subpath in ("escape", "alias/conf", "missing"):  # symlinks are never followed out (or at all)
            err = docker_fails(daemon, "run", "--rm", "--mount", f"source={vol},target=/c,volume-subpath={subpath}",
                               "busybox", "ls", "/c")
            assert "cannot access path" in err
        err = docker_fails(daemon, "run", "--rm", "--mount", f"source={vol},target=/c,volume-subpath=../..",
                           "busybox", "true")
        assert "back traversals" in err
    finally:
        daemon.docker("volume", "rm", vol, check=False)


def test_system_df_counts_volumes(daemon: Caisd) -> None:
    vol = _name("df")
    try:
        docker_ok(daemon, "run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c", "head -c 5000 /dev/zero > /v/f")
        df = json.loads(docker_ok(daemon, "system", "df", "-v", "--format", "{{json .}}"))
        found = [v for v in df["Volumes"] if v["Name"] == vol]
        assert found and found[0]["Size"] == "5kB" and found[0]["Links"] == "0"
        out = subprocess.run([os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                                           "cais"), "system", "df"], capture_output=True, text=True,
                             env={**os.environ, "CAIS_HOST": daemon.host}, check=True).stdout
        assert "Local Volumes" in out
    finally:
        daemon.docker("volume", "rm", vol, check=False)


def test_ps_volume_filter_and_system_prune_volumes(daemon: Caisd) -> None:
    vol, name, anon = _name("psf"), _name("c"), _name("anon")
    try:
        cid = docker_ok(daemon, "create", "--name", name, "-v", f"{vol}:/v", "busybox", "true").strip()
        assert docker_ok(daemon, "ps", "-aq", "--no-trunc", "--filter", f"volume={vol}").split() == [cid]
        assert cid in docker_ok(daemon, "ps", "-aq", "--no-trunc", "--filter", "volume=/v").split()
        assert docker_ok(daemon, "ps", "-aq", "--filter", "volume=cais-vo-unused") == ""
        docker_ok(daemon, "create", "--name", anon, "-v", "/scratch", "busybox", "true")
        anon_volume = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", anon))[0]["Name"]
        docker_ok(daemon, "rm", name, anon)
        out = daemon.cais("system", "prune", "-f", "--volumes").stdout.decode()
        assert f"deleted volume: {anon_volume}" in out
        assert vol in docker_ok(daemon, "volume", "ls", "-q").split()  # named volumes stay
    finally:
        _rm(daemon, name, anon)
        daemon.docker("volume", "rm", vol, check=False)
