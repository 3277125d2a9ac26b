"""links.py on its own: dockerd's parsing of --link and its variables (moby's links_test.go cases)."""

from __future__ import annotations

import pytest

from cais.network.links import env, host_names, parse_link


def test_parse_link() -> None:
    assert parse_link("web") == ("web", "web")
    assert parse_link("web:db") == ("web", "db")
    assert parse_link("/web:/app/db") == ("web", "db")  # inspect's form, as dockerd takes it back
    for bad in ("", "a:b:c", ":x", "x:"):
        with pytest.raises(ValueError, match="links"):
            parse_link(bad)


def test_env_as_dockerd() -> None:
    ports = {"6379/tcp": {}, "6380/tcp": {}, "6381/tcp": {}}
    out = env("/db/docker", "172.0.17.2", ["PASSWORD=gordon", "PATH=/bin", "HOME=/root"], ports)
    assert out == [
        "DOCKER_PORT=tcp://172.0.17.2:6379",
        "DOCKER_PORT_6379_TCP_START=tcp://172.0.17.2:6379", "DOCKER_PORT_6379_TCP_ADDR=172.0.17.2",
        "DOCKER_PORT_6379_TCP_PROTO=tcp", "DOCKER_PORT_6379_TCP_PORT_START=6379",
        "DOCKER_PORT_6379_TCP_END=tcp://172.0.17.2:6381", "DOCKER_PORT_6379_TCP_PORT_END=6381",
        *[f"DOCKER_PORT_{p}_TCP{s}" for p in (6379, 6380, 6381)
          for s in (f"=tcp://172.0.17.2:{p}", "_ADDR=172.0.17.2", f"_PORT={p}", "_PROTO=tcp")],
        "DOCKER_NAME=/db/docker", "DOCKER_ENV_PASSWORD=gordon"]
    assert env("/a/my-db", "10.0.0.2", None, None) == ["MY_DB_NAME=/a/my-db"]
    assert host_names("db", "h", "db") == "db h" and host_names("x", "h", "db") == "x h db"
