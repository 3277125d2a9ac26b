"""The volume endpoints through the real docker CLI and docker-py, as they would work against dockerd."""

from __future__ import annotations

import contextlib
import json

import docker
import pytest

from tests.caisd import Caisd
from tests.volume.conftest import docker_fails, docker_ok


def test_docker_cli_volume_commands(daemon: Caisd) -> None:
    try:
        assert docker_ok(daemon, "volume", "create", "--label", "cais-vo=cli", "cais-vo-cli1") == "cais-vo-cli1\n"
        docker_ok(daemon, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                  "--opt", "o=size=1m", "--label", "cais-vo=cli", "cais-vo-cli2")
        doc = json.loads(docker_ok(daemon, "volume", "inspect", "cais-vo-cli2"))[0]
        assert doc["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
        assert set(doc) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
        assert docker_ok(daemon, "volume", "inspect", "-f", "{{.Driver}} {{.Scope}}", "cais-vo-cli1") == "local local\n"
        ls = docker_ok(daemon, "volume", "ls", "--filter", "label=cais-vo=cli")
        assert ls.splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
        assert sorted(line.split()[1] for line in ls.splitlines()[1:]) == ["cais-vo-cli1", "cais-vo-cli2"]
        assert docker_ok(daemon, "volume", "ls", "-q", "--filter", "name=cli1") == "cais-vo-cli1\n"
        assert "invalid filter" in docker_fails(daemon, "volume", "ls", "--filter", "colour=red")
        out = docker_ok(daemon, "run", "--rm", "--mount", "source=cais-vo-cli2,target=/m", "busybox",
                        "sh", "-c", "grep ' /m ' /proc/mounts")
        assert out.startswith("tmpfs /m tmpfs")
        assert "no such volume" in docker_fails(daemon, "volume", "inspect", "cais-vo-none")
        assert "no such volume" in docker_fails(daemon, "volume", "rm", "cais-vo-none")
        docker_ok(daemon, "volume", "rm", "-f", "cais-vo-none")
        # prune: anonymous volumes only, unless --all
        anon = docker_ok(daemon, "create", "-v", "/anon", "busybox", "true").strip()
        name = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .Mounts}}", anon))[0]["Name"]
        docker_ok(daemon, "rm", anon)
        out = docker_ok(daemon, "volume", "prune", "-f", "--filter", "label=cais-vo=cli")
        assert "cais-vo-cli" not in out
        out = docker_ok(daemon, "volume", "prune", "-f")
        assert name in out and "cais-vo-cli" not in out
        out = docker_ok(daemon, "volume", "prune", "-f", "--all", "--filter", "label=cais-vo=cli")
        assert "cais-vo-cli1" in out and "cais-vo-cli2" in out and "Total reclaimed space" in out
        for bad, message in ((["bad/name"], "invalid characters"), (["-d", "cais-vo-nodriver", "cais-vo-x"],
                             "not found"), (["-o", "colour=red", "cais-vo-x"], 'invalid option: "colour"')):
            assert message in docker_fails(daemon, "volume", "create", *bad)
        assert "cais-vo-x" not in docker_ok(daemon, "volume", "ls", "-q")
    finally:
        daemon.docker("volume", "rm", "-f", "cais-vo-cli1", "cais-vo-cli2", check=False)


def test_cais_cli_volume_commands(daemon: Caisd) -> None:
    try:
        assert daemon.cais("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "--label", "a=b",
                           "cais-vo-c1").stdout == b"cais-vo-c1\n"
        assert b"cais-vo-c1" in daemon.cais("volume", "ls", "--filter", "label=a=b").stdout
        doc = json.loads(daemon.cais("volume", "inspect", "cais-vo-c1").stdout)[0]
        assert doc["Labels"] == {"a": "b"} and doc["Options"]["type"] == "tmpfs"
        out = daemon.cais("run", "--rm", "-v", "cais-vo-c1:/v", "--tmpfs", "/t:size=1m", "busybox",
                          "sh", "-c", "grep -c tmpfs /proc/mounts").stdout
        assert int(out) >= 2
        daemon.cais("create", "--name", "cais-vo-src", "-v", "cais-vo-c1:/shared", "busybox", "true")
        out = daemon.cais("run", "--rm", "--volumes-from", "cais-vo-src:ro", "--mount",
                          "type=tmpfs,target=/scratch,tmpfs-size=2m", "-v", "/anon", "busybox", "sh", "-c",
                          "touch /shared/x 2>&1; df -k /scratch | tail -1", check=False).stdout
        assert b"Read-only file system" in out and b" 2048 " in out
        daemon.cais("rm", "cais-vo-src")
        bad = daemon.cais("volume", "create", "bad/name", check=False)
        assert bad.returncode != 0 and b"invalid characters" in bad.stderr and b"Traceback" not in bad.stderr
        bad = daemon.cais("run", "--rm", "--mount", "type=bind,target=/x,bogus=1", "busybox", "true", check=False)
        assert bad.returncode == 125 and b"unexpected key 'bogus'" in bad.stderr
        assert daemon.cais("volume", "rm", "cais-vo-c1").stdout == b"cais-vo-c1\n"
        assert daemon.cais("volume", "prune", "-f").returncode == 0
    finally:
        daemon.cais("rm", "-f", "cais-vo-src", check=False)
        daemon.cais("volume", "rm", "-f", "cais-vo-c1", check=False)


def test_docker_py_volumes(client: docker.DockerClient) -> None:
    vol = client.volumes.create("cais-vo-py", driver="local", labels={"k": "v"},
                                driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=4m"})
    try:
        assert vol.name == "cais-vo-py" and vol.attrs["Labels"] == {"k": "v"}
        assert client.volumes.get("cais-vo-py").attrs["Options"]["o"] == "size=4m"
        assert [v.name for v in client.volumes.list(filters={"label": "k=v"})] == ["cais-vo-py"]
        out = client.containers.run("busybox", ["sh", "-c", "echo py > /v/f; cat /v/f; df -k /v | tail -1"],
                                    volumes={"cais-vo-py": {"bind": "/v", "mode": "rw"}}, remove=True)
        assert out.startswith(b"py\n") and b" 4096 " in out
        mount = docker.types.Mount("/m", "cais-vo-py", type="volume", read_only=True)
        c = client.containers.create("busybox", ["sh", "-c", "touch /m/x"], mounts=[mount])
        try:
            c.start()
            assert c.wait()["StatusCode"] != 0
            c.reload()
            assert c.attrs["Mounts"][0]["RW"] is False and c.attrs["Mounts"][0]["Name"] == "cais-vo-py"
            with pytest.raises(docker.errors.APIError) as e:
                vol.remove()
            assert e.value.status_code == 409
        finally:
            c.remove(v=True)
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("cais-vo-missing")
        with pytest.raises(docker.errors.APIError) as e:
            client.volumes.create("bad/name")
        assert e.value.status_code == 400
        anon = client.volumes.create()
        assert len(anon.name) == 64
        result = client.volumes.prune(filters={"all": "true", "label": "k=v"})
        assert result["VolumesDeleted"] == ["cais-vo-py"]
        anon.remove()
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.volumes.get("cais-vo-py").remove(force=True)


@pytest.mark.parametrize("body", [
    {"Name": 5}, {"Name": "cais-vo-g", "Driver": ["local"]}, {"Name": "cais-vo-g", "Labels": "x"},
    {"Name": "cais-vo-g", "Labels": {"a": 1}}, {"Name": "cais-vo-g", "DriverOpts": {"type": 1}},
    {"Name": "cais-vo-g", "DriverOpts": ["type"]}, [1], "garbage",
])
def test_garbage_create_requests(client: docker.DockerClient, body: object) -> None:
    api = client.api
    r = api._post(api._url("/volumes/create"), data=json.dumps(body) if body != "garbage" else b"{nope",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] and "Traceback" not in r.text
    assert "cais-vo-g" not in [v.name for v in client.volumes.list()]


def test_garbage_container_mounts(client: docker.DockerClient) -> None:
    api = client.api
    for host in ({"Binds": "nope"}, {"Binds": [5]}, {"Mounts": [{"Type": "volume"}]}, {"Mounts": {"a": 1}},
                 {"Tmpfs": ["/x"]}, {"Tmpfs": {"/x": 5}}, {"VolumesFrom": [""]}, {"Mounts": [5]},
                 {"Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o17777}}]}):
        r = api._post(api._url("/containers/create"), data=json.dumps({"Image": "busybox", "HostConfig": host}),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (host, r.text)
        assert "Traceback" not in r.text
