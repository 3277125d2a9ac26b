"""A caisd killed with SIGKILL and started again keeps every volume, its data and its references."""

from __future__ import annotations

import json
import signal

from cais.linux.mountinfo import is_mount_point
from tests.caisd import Caisd, caisd
from tests.volume.conftest import docker_fails, docker_ok


def _volumes(d: Caisd) -> list[dict]:
    return [json.loads(line) for line in docker_ok(d, "volume", "ls", "--format", "{{json .}}").splitlines()]


def test_sigkill_and_restart_keeps_volumes() -> None:
    with caisd() as d:
        docker_ok(d, "volume", "create", "--label", "keep=yes", "cais-vo-plain")
        docker_ok(d, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", "cais-vo-tmpfs")
        docker_ok(d, "run", "--name", "cais-vo-writer", "-v", "cais-vo-plain:/v", "busybox",
                  "sh", "-c", "echo durable > /v/f")
        docker_ok(d, "run", "-d", "--name", "cais-vo-runner", "-v", "cais-vo-tmpfs:/t", "-v", "/anon", "busybox",
                  "sh", "-c", "echo in-memory > /t/f; echo anon > /anon/f; sleep 300")
        docker_ok(d, "exec", "cais-vo-runner", "sh", "-c", "while [ ! -s /anon/f ]; do sleep 0.1; done")
        before = _volumes(d)
        tmpfs_path = json.loads(docker_ok(d, "volume", "inspect", "cais-vo-tmpfs"))[0]["Mountpoint"]
        assert is_mount_point(tmpfs_path)

        d.kill(signal.SIGKILL)
        d.start()

        assert _volumes(d) == before
        assert json.loads(docker_ok(d, "volume", "inspect", "cais-vo-plain"))[0]["Labels"] == {"keep": "yes"}
        assert docker_ok(d, "run", "--rm", "-v", "cais-vo-plain:/v", "busybox", "cat", "/v/f") == "durable\n"
        # the container kept running (its supervisor outlived caisd) and so did its tmpfs volume
        assert docker_ok(d, "exec", "cais-vo-runner", "cat", "/t/f", "/anon/f") == "in-memory\nanon\n"
        assert is_mount_point(tmpfs_path)
        assert "volume is in use" in docker_fails(d, "volume", "rm", "-f", "cais-vo-tmpfs")
        assert "volume is in use" in docker_fails(d, "volume", "rm", "cais-vo-plain")
        docker_ok(d, "rm", "-f", "cais-vo-runner", "cais-vo-writer")
        assert not is_mount_point(tmpfs_path)  # unmounted with its last user
        docker_ok(d, "volume", "rm", "cais-vo-plain", "cais-vo-tmpfs")
