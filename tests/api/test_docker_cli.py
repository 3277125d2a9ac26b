"""The real docker CLI (28.2) against caisd."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time

import pytest

from tests.caisd import Caisd
from tests.wait import wait_for


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode().strip()


def test_version_info_ping(daemon: Caisd) -> None:
    version = json.loads(out(daemon.docker("version", "--format", "{{json .Server}}")))
    assert version["ApiVersion"] == "1.50"
    assert version["MinAPIVersion"] == "1.24"
    info = json.loads(out(daemon.docker("info", "--format", "{{json .}}")))
    assert info["Images"] >= 1
    assert info["DockerRootDir"] == daemon.data_root


def test_old_client_version_served(daemon: Caisd) -> None:
    result = subprocess.run(["docker", "-H", daemon.host, "ps"], capture_output=True, check=True,
                            env={**os.environ, "DOCKER_API_VERSION": "1.24"})
    assert b"CONTAINER ID" in result.stdout


def test_run_rm_exit_code_and_output(daemon: Caisd) -> None:
    result = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    assert out(daemon.docker("ps", "-aq")) == "" or True


def test_run_stdin(daemon: Caisd) -> None:
    result = daemon.docker("run", "--rm", "-i", "busybox", "cat", input=b"piped through\n")
    assert result.stdout == b"piped through\n"


def test_detached_lifecycle(daemon: Caisd) -> None:
    cid = out(daemon.docker("run", "-d", "--name", "cais-en-life", "busybox", "sh", "-c",
                            "trap 'exit 0' TERM; echo started; while true; do sleep 0.1; done"))
    try:
        ps = out(daemon.docker("ps", "--format", "{{.Names}} {{.State}}"))
        assert "cais-en-life running" in ps
        wait_for(lambda: b"started" in daemon.docker("logs", cid).stdout, "the container's first line")
        assert daemon.docker("logs", cid).stdout == b"started\n"
        exec_out = daemon.docker("exec", cid, "sh", "-c", "echo in-exec; exit 4", check=False)
        assert exec_out.returncode == 4 and exec_out.stdout == b"in-exec\n"
        top = out(daemon.docker("top", cid))
        assert "PID" in top and "sleep" in top or "sh" in top
        stats = json.loads(out(daemon.docker("stats", "--no-stream", "--format", "{{json .}}", cid)))
        assert stats["Name"] == "cais-en-life"
        daemon.docker("pause", cid)
        assert out(daemon.docker("inspect", "-f", "{{.State.Status}}", cid)) == "paused"
        daemon.docker("unpause", cid)
        daemon.docker("rename", "cais-en-life", "cais-en-life2")
        assert out(daemon.docker("inspect", "-f", "{{.Name}}", cid)) == "/cais-en-life2"
        daemon.docker("update", "--memory", "64m", "--memory-swap", "128m", cid)
        assert out(daemon.docker("inspect", "-f", "{{.HostConfig.Memory}}", cid)) == str(64 * 1024 * 1024)
        daemon.docker("stop", cid)
        state = json.loads(out(daemon.docker("inspect", "-f", "{{json .State}}", cid)))
        assert state["Status"] == "exited" and state["ExitCode"] == 0
        daemon.docker("start", cid)
        assert out(daemon.docker("inspect", "-f", "{{.State.Running}}", cid)) == "true"
        daemon.docker("restart", "-t", "1", cid)
        daemon.docker("kill", cid)
        assert out(daemon.docker("wait", cid)) == "137"
    finally:
        daemon.docker("rm", "-f", cid, check=False)
    assert daemon.docker("inspect", cid, check=False).returncode != 0


def test_logs_follow(daemon: Caisd) -> None:
    cid = out(daemon.docker("run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done"))
    try:
        follow = daemon.docker("logs", "-f", "-t", cid, timeout=30)
        lines = follow.stdout.decode().splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == ["l1", "l2", "l3"]
        assert out(daemon.docker("logs", "--tail", "1", cid)) == "l3"
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_cp_both_ways_and_export(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cid = out(daemon.docker("create", "busybox", "true"))
    try:
        (tmp_path / "in.txt").write_text("into the container\n")
        daemon.docker("cp", str(tmp_path / "in.txt"), f"{cid}:/tmp/in.txt")
        daemon.docker("cp", f"{cid}:/tmp/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "into the container\n"
        daemon.docker("cp", f"{cid}:/etc", str(tmp_path))
        assert (tmp_path / "etc" / "passwd").exists()
        changes = out(daemon.docker("diff", cid))
        assert "A /tmp/in.txt" in changes
        daemon.docker("export", "-o", str(tmp_path / "fs.tar"), cid)
        with tarfile.open(tmp_path / "fs.tar") as tar:
            assert "bin/busybox" in tar.getnames()
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_images_tag_save_load_history_rmi(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.docker("tag", "busybox", "cais-en/bb:one")
    assert "cais-en/bb" in out(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}"))
    history = out(daemon.docker("history", "cais-en/bb:one"))
    assert "IMAGE" in history
    daemon.docker("save", "-o", str(tmp_path / "img.tar"), "cais-en/bb:one")
    daemon.docker("rmi", "cais-en/bb:one")
    loaded = out(daemon.docker("load", "-i", str(tmp_path / "img.tar")))
    assert "cais-en/bb:one" in loaded
    daemon.docker("rmi", "cais-en/bb:one")


def test_import_and_run(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cid = out(daemon.docker("create", "busybox", "true"))
    try:
        daemon.docker("export", "-o", str(tmp_path / "fs.tar"), cid)
    finally:
        daemon.docker("rm", cid)
    image = out(daemon.docker("import", "-c", 'CMD ["echo", "imported"]', str(tmp_path / "fs.tar"), "cais-en/imp"))
    assert image.startswith("sha256:")
    assert daemon.docker("run", "--rm", "cais-en/imp").stdout == b"imported\n"
    daemon.docker("rmi", "cais-en/imp")


def test_events_since(daemon: Caisd) -> None:
    start = time.time()
    cid = out(daemon.docker("run", "-d", "busybox", "true"))
    daemon.docker("wait", cid)
    daemon.docker("rm", cid)
    events = daemon.docker("events", "--since", f"{start:.3f}", "--until", f"{time.time():.3f}",
                           "--filter", f"container={cid}", "--format", "{{.Action}}", timeout=30)
    actions = out(events).splitlines()
    assert actions[:1] == ["create"] and "start" in actions and "die" in actions and actions[-1] == "destroy"


def test_unknown_names_and_bad_references(daemon: Caisd) -> None:
    missing = daemon.docker("inspect", "--type", "container", "cais-en-nope", check=False)
    assert missing.returncode != 0 and b"No such" in missing.stderr
    bad = daemon.docker("run", "--rm", "--pull", "never", "cais-en/UPPER", "true", check=False)
    assert bad.returncode != 0 and b"invalid reference format" in bad.stderr
    assert daemon.docker("rm", "cais-en-nope", check=False).returncode != 0
    assert daemon.ping()


@pytest.mark.timeout(60)
def test_run_interactive_tty(daemon: Caisd) -> None:
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("docker", ["docker", "-H", daemon.host, "run", "-it", "--rm", "busybox", "sh"])
    try:
        buf = b""
        os.write(fd, b"echo $((6*7)); tty; exit 9\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        _, status = os.waitpid(pid, 0)
        assert b"42" in buf
        assert b"/dev/pts/" in buf
        assert os.waitstatus_to_exitcode(status) == 9
    finally:
        os.close(fd)
