"""docker's namespace modes against caisd: --pid, --ipc, --uts and --cgroupns, with the docker CLI,
docker-py and the cais CLI (what dockerd 20.10 does for each, see cais/engine/namespaces.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.caisd import VENV_BIN, Caisd, caisd


@pytest.fixture(scope="module")
def daemon() -> Iterator[Caisd]:
    with caisd(prefix="cais-pi") as d:
        yield d


def _run_d(d: Caisd, name: str, *flags: str) -> str:
    return d.docker("run", "-d", "--name", name, *flags, "busybox", "sleep", "300").stdout.decode().strip()


def _inspect(d: Caisd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    return result.stderr.decode()


def test_pid_host_sees_host_processes(daemon: Caisd) -> None:
    with open("/proc/1/comm") as f:
        host_init = f.read()
    out = daemon.docker("run", "--rm", "--pid", "host", "busybox", "cat", "/proc/1/comm").stdout.decode()
    assert out == host_init
    # and the private default does not
    assert daemon.docker("run", "--rm", "busybox", "cat", "/proc/1/comm").stdout == b"cat\n"
    out = daemon.docker("run", "--rm", "--pid", "host", "--privileged", "busybox", "cat", "/proc/1/comm").stdout
    assert out.decode() == host_init
    cid = _run_d(daemon, "cais-pi-pidhost", "--pid", "host")
    try:
        info = _inspect(daemon, cid)
        assert info["HostConfig"]["PidMode"] == "host"
        assert _ns(info["State"]["Pid"], "pid") == _ns(os.getpid(), "pid")
        assert daemon.docker("exec", cid, "cat", "/proc/1/comm").stdout.decode() == host_init
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_pid_container_sees_its_processes(daemon: Caisd) -> None:
    donor = _run_d(daemon, "cais-pi-piddonor")
    try:
        out = daemon.docker("run", "--rm", "--pid", "container:cais-pi-piddonor", "busybox",
                            "cat", "/proc/1/cmdline").stdout
        assert out == b"sleep\x00300\x00"
        joiner = _run_d(daemon, "cais-pi-pidjoiner", "--pid", "container:cais-pi-piddonor")
        info = _inspect(daemon, joiner)
        assert info["HostConfig"]["PidMode"] == f"container:{donor}"  # as dockerd 20.10 records it
        assert _ns(info["State"]["Pid"], "pid") == _ns(_inspect(daemon, donor)["State"]["Pid"], "pid")
        ps = daemon.docker("exec", "cais-pi-pidjoiner", "ps", "-o", "pid,args").stdout.decode()
        assert sum("sleep 300" in line for line in ps.splitlines()) == 2
        # the joiner came from a fresh bootstrap: the init zygote still makes namespaces of their own
        assert daemon.docker("run", "--rm", "busybox", "cat", "/proc/1/comm").stdout == b"cat\n"
        daemon.docker("stop", "-t", "0", "cais-pi-piddonor")
        # the kernel kills the rest of a PID namespace with its init: the joiner exits too
        assert daemon.docker("wait", joiner, timeout=30).stdout == b"137\n"
        daemon.docker("rm", "-f", joiner)
        # dockerd's error: the container to join must be running
        err = _error(daemon.docker("run", "--rm", "--pid", "container:cais-pi-piddonor", "busybox", "true",
                                   check=False))
        assert f"container {donor} is not running" in err
        for flag in ("--pid", "--ipc"):  # at create, as dockerd
            err = _error(daemon.docker("create", flag, "container:cais-pi-nosuch", "busybox", "true", check=False))
            assert "No such container: cais-pi-nosuch" in err
        err = _error(daemon.docker("create", "--name", "cais-pi-self", "--pid", "container:cais-pi-self", "busybox",
                                   "true", check=False))
        assert "No such container: cais-pi-self" in err
    finally:
        daemon.docker("rm", "-f", "cais-pi-piddonor", "cais-pi-pidjoiner", check=False)


def test_ipc_shareable_and_container(daemon: Caisd) -> None:
    donor = _run_d(daemon, "cais-pi-ipcdonor", "--ipc", "shareable")
    private = _run_d(daemon, "cais-pi-ipcprivate")
    try:
        assert _inspect(daemon, donor)["HostConfig"]["IpcMode"] == "shareable"
        assert _inspect(daemon, private)["HostConfig"]["IpcMode"] == "private"
        daemon.docker("run", "--rm", "--ipc", "container:cais-pi-ipcdonor", "busybox", "sh", "-c",
                      "echo shared > /dev/shm/cais-pi")
        assert daemon.docker("exec", donor, "cat", "/dev/shm/cais-pi").stdout == b"shared\n"
        joiner = _run_d(daemon, "cais-pi-ipcjoiner", "--ipc", "container:cais-pi-ipcdonor")
        pids = [_inspect(daemon, c)["State"]["Pid"] for c in (donor, joiner, private)]
        assert _ns(pids[0], "ipc") == _ns(pids[1], "ipc") != _ns(pids[2], "ipc")
        assert _ns(pids[0], "ipc") != _ns(os.getpid(), "ipc")
        err = _error(daemon.docker("run", "--rm", "--ipc", "container:cais-pi-ipcprivate", "busybox", "true",
                                   check=False))
        assert f"can't join IPC of container {private}: non-shareable IPC (hint: use IpcMode:shareable" in err
        daemon.docker("rm", "-f", joiner)
        daemon.docker("stop", "-t", "0", donor)
        err = _error(daemon.docker("run", "--rm", "--ipc", "container:cais-pi-ipcdonor", "busybox", "true",
                                   check=False))
        assert f"can't join IPC of container {donor}: container {donor} is not running" in err
        # its /dev/shm is unmounted with its exit, and comes back empty at the next start
        daemon.docker("start", donor)
        assert daemon.docker("exec", donor, "ls", "/dev/shm").stdout == b""
    finally:
        daemon.docker("rm", "-f", "cais-pi-ipcdonor", "cais-pi-ipcprivate", "cais-pi-ipcjoiner", check=False)
    with open("/proc/self/mounts") as f:
        assert not any("cais-pi" in line and "/shm " in line for line in f)


def test_ipc_host_and_none(daemon: Caisd) -> None:
    cid = _run_d(daemon, "cais-pi-ipchost", "--ipc", "host")
    try:
        assert _ns(_inspect(daemon, cid)["State"]["Pid"], "ipc") == _ns(os.getpid(), "ipc")
    finally:
        daemon.docker("rm", "-f", cid, check=False)
    mounts = daemon.docker("run", "--rm", "--ipc", "none", "busybox", "cat", "/proc/mounts").stdout.decode()
    assert " /dev/shm " not in mounts and " /dev/mqueue " in mounts
    mounts = daemon.docker("run", "--rm", "busybox", "cat", "/proc/mounts").stdout.decode()
    assert " /dev/shm tmpfs " in mounts


def test_uts_host(daemon: Caisd) -> None:
    out = daemon.docker("run", "--rm", "--uts", "host", "busybox", "hostname").stdout.decode().strip()
    assert out == socket.gethostname()
    assert daemon.cais("run", "--rm", "--uts", "host", "busybox", "hostname").stdout.decode().strip() == out
    err = _error(daemon.docker("run", "--rm", "--uts", "host", "-h", "cais-pi", "busybox", "true", check=False))
    assert "conflicting options: hostname and the UTS mode" in err


def test_cgroupns_host_and_private(daemon: Caisd) -> None:
    out = daemon.docker("run", "--rm", "--cgroupns", "host", "busybox", "cat", "/proc/self/cgroup").stdout.decode()
    assert daemon.cgroup_parent in out
    out = daemon.docker("run", "--rm", "--cgroupns", "private", "busybox", "cat",
                        "/proc/self/cgroup").stdout.decode()
    assert daemon.cgroup_parent not in out
    cid = daemon.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        assert _inspect(daemon, cid)["HostConfig"]["CgroupnsMode"] == "host"  # cgroup v1: dockerd's default
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_docker_py_modes_and_bad_values(daemon: Caisd) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    try:
        out = client.containers.run("busybox", ["cat", "/proc/1/comm"], pid_mode="host", remove=True)
        with open("/proc/1/comm") as f:
            assert out.decode() == f.read()
        created = client.containers.create("busybox", "true", ipc_mode="none", uts_mode="host", name="cais-pi-py")
        try:
            host = created.attrs["HostConfig"]
            assert (host["IpcMode"], host["UTSMode"], host["PidMode"]) == ("none", "host", "")
        finally:
            created.remove(force=True)
        for host, message in (({"PidMode": "bogus"}, "invalid PID mode: bogus"),
                              ({"PidMode": "container:"}, "invalid PID mode: container:"),
                              ({"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
                              ({"UTSMode": "container:x"}, "invalid UTS mode: container:x"),
                              ({"CgroupnsMode": "bogus"}, "invalid cgroup namespace mode: bogus"),
                              ({"IpcMode": 3}, "HostConfig.IpcMode of type string")):
            with pytest.raises(docker.errors.APIError) as info:  # raw: docker-py checks some itself
                client.api.create_container("busybox", "true", host_config=host)
            assert info.value.status_code == 400 and message in str(info.value)
    finally:
        client.close()
    # the cais CLI: the same one-line error, no traceback
    err = _error(daemon.cais("run", "--rm", "--pid", "bogus", "busybox", "true", check=False))
    assert "invalid PID mode: bogus" in err and "Traceback" not in err


def test_daemon_default_ipc_mode() -> None:
    """default-ipc-mode: containers that give no IPC mode are shareable; dockerd's refusal of others."""
    with caisd(prefix="cais-pi", extra=["--default-ipc-mode", "shareable", "--default-cgroupns-mode", "private"]) as d:
        donor = _run_d(d, "cais-pi-defdonor")
        try:
            host = _inspect(d, donor)["HostConfig"]
            assert (host["IpcMode"], host["CgroupnsMode"]) == ("shareable", "private")
            d.docker("run", "--rm", "--ipc", f"container:{donor}", "busybox", "touch", "/dev/shm/cais-pi")
            assert d.docker("exec", donor, "ls", "/dev/shm").stdout == b"cais-pi\n"
        finally:
            d.docker("rm", "-f", donor, check=False)
    bad = subprocess.run([os.path.join(VENV_BIN, "caisd"), "--default-ipc-mode", "host", "--data-root",
                          "/nonexistent/cais-pi"], capture_output=True, timeout=60)
    assert bad.returncode != 0 and b'IPC mode "host" is not supported as default value' in bad.stderr
    assert b"Traceback" not in bad.stderr


def test_sysctls_only_of_namespaces_of_its_own(daemon: Caisd) -> None:
    """As runc: a container that shares the host's IPC or UTS namespace cannot set their sysctls
    (the host's); with a namespace of its own it can. (Values are the host's current ones, so that
    nothing would change even if a refusal regressed.)"""
    with open("/proc/sys/kernel/shm_rmid_forced") as f:
        current = f.read().strip()
    flag = f"kernel.shm_rmid_forced={current}"
    err = _error(daemon.docker("run", "--rm", "--ipc", "host", "--sysctl", flag, "busybox", "true", check=False))
    assert "sysctl 'kernel.shm_rmid_forced' is not allowed in the hosts ipc namespace" in err
    with open("/proc/sys/kernel/domainname") as f:
        domain = f.read().strip()
    # (the docker CLI, and the cais CLI as it, refuse kernel.domainname themselves: ask the API)
    import docker

    client = docker.DockerClient(base_url=daemon.host)
    try:
        created = client.api.create_container("busybox", "true", host_config={
            "UTSMode": "host", "Sysctls": {"kernel.domainname": domain}})
        try:
            with pytest.raises(docker.errors.APIError) as info:
                client.api.start(created["Id"])
            assert "sysctl 'kernel.domainname' is not in a separate kernel namespace" in str(info.value)
        finally:
            client.api.remove_container(created["Id"], force=True)
    finally:
        client.close()
    out = daemon.docker("run", "--rm", "--sysctl", "kernel.shm_rmid_forced=1", "busybox", "cat",
                        "/proc/sys/kernel/shm_rmid_forced").stdout
    assert out == b"1\n"


def test_as_dockerd(daemon: Caisd, busybox_dir: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same commands against dockerd 20.10 and caisd: the recorded modes, and the errors."""
    from tests.peers import dockerd

    tar = os.path.join(str(tmp_path), "busybox.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)

    def session(d) -> list:  # type: ignore[no-untyped-def]
        def run(*args: str) -> subprocess.CompletedProcess[bytes]:
            return d.docker(*args, check=False)

        seen: list = []
        donor = run("run", "-d", "--network=none", "--name", "cais-pi-asd", "--ipc", "shareable", "busybox",
                    "sleep", "60").stdout.decode().strip()
        private = run("run", "-d", "--network=none", "--name", "cais-pi-asp", "busybox", "sleep",
                      "60").stdout.decode().strip()
        for flags in ([], ["--pid", "host", "--uts", "host", "--ipc", "none", "--cgroupns", "private"],
                      ["--pid", "container:cais-pi-asd", "--ipc", "container:cais-pi-asd"], ["--ipc", "host"]):
            cid = run("create", "--network=none", *flags, "busybox", "true").stdout.decode().strip()
            host = json.loads(run("inspect", cid).stdout)[0]["HostConfig"]
            seen.append([str(host[k]).replace(donor, "DONOR") for k in ("PidMode", "IpcMode", "UTSMode",
                                                                         "CgroupnsMode")])
            run("rm", "-f", cid)
        for flags in (["--ipc", "container:cais-pi-asp"], ["--uts", "host", "-h", "x"],
                      ["--pid", "container:cais-pi-nosuch"]):
            err = run("run", "--rm", "--network=none", *flags, "busybox", "true").stderr.decode()
            seen.append(err.splitlines()[0].replace(private, "PRIVATE"))
        run("stop", "-t", "0", donor)
        for flags in (["--pid", "container:cais-pi-asd"], ["--ipc", "container:cais-pi-asd"]):
            err = run("run", "--rm", "--network=none", *flags, "busybox", "true").stderr.decode()
            seen.append(err.splitlines()[0].replace(donor, "DONOR"))
        run("rm", "-f", donor, private)
        return seen

    with dockerd() as peer:
        peer.docker("import", tar, "busybox:latest")
        theirs = session(peer)
    assert len(theirs) == 9 and all("Error response from daemon" in e for e in theirs[4:])
    assert session(daemon) == theirs
