"""A restart policy's restart is one state change: the container is Restarting until it runs again."""

from __future__ import annotations

import docker


def test_a_restarting_container_never_looks_exited_in_between(client: docker.DockerClient) -> None:
    """The policy's restart cleared Restarting before its start recorded the container running: in
    between it looked exited (for inspect, `wait`, `rm` without -f, `stop`), and a `stop` then
    answered "already stopped" while the start went on."""
    api = client.api
    host = api.create_host_config(restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
    cid = api.create_container("busybox", ["sh", "-c", "exit 1"], host_config=host)["Id"]
    try:
        api.start(cid)
        seen = []
        while True:  # no deadline here: pytest's timeout ends a hang
            inspected = api.inspect_container(cid)
            state = inspected["State"]
            if not state["Running"] and not state["Restarting"]:
                seen.append(inspected["RestartCount"])
                if inspected["RestartCount"] == 3:
                    break
        assert set(seen) == {3}, f"looked exited after {sorted(set(seen) - {3})} restarts"
        assert state["Status"] == "exited" and state["ExitCode"] == 1
    finally:
        api.remove_container(cid, force=True)
