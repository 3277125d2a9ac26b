"""docker-py against caisd: the assertions it would pass against dockerd."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time

import docker
import pytest

from tests.caisd import Caisd
from tests.wait import wait_for


def test_ping_version_info(client: docker.DockerClient) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.50"
    assert client.info()["ServerVersion"]


def test_containers_run_and_inspect(client: docker.DockerClient) -> None:
    assert client.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "exit 2"], remove=True)
    assert e.value.exit_status == 2
    c = client.containers.run("busybox", ["sleep", "30"], detach=True, labels={"cais-en": "yes"},
                              environment={"A": "b"}, working_dir="/tmp", hostname="cais-en-host")
    try:
        c.reload()
        assert c.status == "running"
        assert c.attrs["Config"]["Hostname"] == "cais-en-host"
        assert "A=b" in c.attrs["Config"]["Env"]
        assert client.containers.list(filters={"label": "cais-en=yes"})[0].id == c.id
        code, output = c.exec_run(["sh", "-c", "hostname; pwd; echo $A"])
        assert code == 0 and output == b"cais-en-host\n/tmp\nb\n"
        c.kill()
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_logs_stream_and_attach(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], detach=True)
    try:
        streamed = b"".join(c.logs(stream=True, follow=True))
        assert streamed == b"1\n2\n3\n"
        assert c.logs(stdout=True, stderr=False, tail=1) == b"3\n"
    finally:
        c.remove(force=True)
    c = client.containers.create("busybox", ["sh", "-c", "echo attached; echo e >&2"])
    try:
        sock = c.attach_socket(params={"stdout": 1, "stderr": 1, "stream": 1})
        got = []
        reader = threading.Thread(target=lambda: got.append(_read_all(sock)))
        reader.start()
        c.start()
        reader.join(30)
        assert b"attached\n" in got[0] and b"e\n" in got[0]
    finally:
        c.remove(force=True)


def _read_all(sock) -> bytes:  # type: ignore[no-untyped-def]
    raw = getattr(sock, "_sock", sock)
    data = b""
    while chunk := raw.recv(4096):
        data += chunk
    return data


def test_exec_stream_and_inspect(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "30"], detach=True)
    try:
        exec_id = client.api.exec_create(c.id, ["sh", "-c", "echo a; echo b >&2; exit 5"])["Id"]
        out = client.api.exec_start(exec_id, demux=True)
        assert out == (b"a\n", b"b\n")
        wait_for(lambda: not client.api.exec_inspect(exec_id)["Running"], "the exec's end")
        assert client.api.exec_inspect(exec_id)["ExitCode"] == 5
    finally:
        c.remove(force=True)


def test_images_and_archive(client: docker.DockerClient) -> None:
    image = client.images.get("busybox")
    assert "busybox:latest" in image.tags
    image.tag("cais-en/py", "t1")
    assert client.images.get("cais-en/py:t1").id == image.id
    client.images.remove("cais-en/py:t1")
    c = client.containers.create("busybox", ["true"])
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))
        assert c.put_archive("/tmp", buf.getvalue())
        stream, stat = c.get_archive("/tmp/hello.txt")
        assert stat["name"] == "hello.txt" and stat["size"] == 5
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            assert tar.extractfile("hello.txt").read() == b"hello"  # type: ignore[union-attr]
    finally:
        c.remove(force=True)


def test_events(client: docker.DockerClient) -> None:
    since = int(time.time()) - 1
    c = client.containers.run("busybox", ["true"], detach=True)
    c.wait()
    c.remove()
    events = client.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"container": c.id})
    actions = [e["Action"] for e in events]
    assert actions[0] == "create" and "start" in actions and "destroy" in actions


def test_logs_with_the_local_driver(client: docker.DockerClient, daemon: Caisd) -> None:
    from docker.types import LogConfig
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; echo e$i >&2; sleep 0.2; done"],
                              detach=True, log_config=LogConfig(type="local", config={"max-size": "1m"}))
    try:
        streamed = b"".join(c.logs(stream=True, follow=True, stderr=False))
        assert streamed == b"1\n2\n3\n"
        assert c.logs(stdout=False, stderr=True) == b"e1\ne2\ne3\n"
        stamped = c.logs(timestamps=True, stderr=False).splitlines()
        assert [line.split(b" ", 1)[1] for line in stamped] == [b"1", b"2", b"3"]
        assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
        # attach with logs, on a plain socket: docker-py's attach(logs=True) and attach_socket lose
        # what arrives with the response's headers (against dockerd as well)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(daemon.sock)
            s.sendall(f"POST /containers/{c.id}/attach?logs=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\nContent-Length: 0\r\n\r\n".encode())
            body = _read_all(s).partition(b"\r\n\r\n")[2]
        assert body == b"".join(b"\x01\0\0\0\0\0\0\x02" + n + b"\n" for n in (b"1", b"2", b"3"))
        with socket.socket(socket.AF_UNIX) as s:  # a tail that is no number is all, as dockerd has it
            s.connect(daemon.sock)
            s.sendall(f"GET /containers/{c.id}/logs?stdout=1&tail=-2 HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n".encode())
            assert _read_all(s).count(b"\x01\0\0\0") == 3
    finally:
        c.remove(force=True)


def test_waits_for_the_exit_and_the_removal(client: docker.DockerClient) -> None:
    """A --rm container's waits: not-running and removed, both with its exit code; another's
    next-exit at its exit and removed only once it is removed."""
    auto = client.containers.run("busybox", ["sh", "-c", "sleep 1; exit 4"], detach=True, auto_remove=True)
    kept = client.containers.run("busybox", ["sh", "-c", "sleep 1; exit 5"], detach=True)
    answers: dict[str, int] = {}

    def wait(name: str, container, condition: str) -> None:  # type: ignore[no-untyped-def]
        answers[name] = container.wait(condition=condition, timeout=60)["StatusCode"]

    threads = {name: threading.Thread(target=wait, args=(name, c, cond), daemon=True)
               for name, c, cond in (("auto removed", auto, "removed"), ("auto not-running", auto, "not-running"),
                                     ("kept next-exit", kept, "next-exit"), ("kept removed", kept, "removed"))}
    for t in threads.values():
        t.start()
    threads["kept next-exit"].join(60)
    assert answers.get("kept next-exit") == 5
    assert "kept removed" not in answers
    kept.remove()
    for t in threads.values():
        t.join(60)
    assert answers == {"auto removed": 4, "auto not-running": 4, "kept next-exit": 5, "kept removed": 5}
    with pytest.raises(docker.errors.NotFound):
        auto.reload()
