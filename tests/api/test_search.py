"""GET /images/search, `docker search` and `cais search` against registries on loopback.

The CNCF distribution registry (docker-registry) has no v1 search API: cais searches its
/v2/_catalog. Docker Hub's v1 search cannot be reached here (and is never contacted by tests);
its protocol is exercised with a small loopback server answering /v1/search as the Hub does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import Iterator

import docker
import pytest
from aiohttp import web

from tests.caisd import Caisd
from tests.ports import free_port
from tests.registry.conftest import (
    PASSWORD,
    USER,
    RunningRegistry,
    distribution_registry,
    tls_dir,  # noqa: F401 - the fixture, for test_search_with_credentials
)


def _lines(done) -> list[str]:  # type: ignore[no-untyped-def]
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def test_docker_search_catalog(daemon: Caisd, pushed_registry: RunningRegistry) -> None:
    where = f"localhost:{pushed_registry.host.rpartition(':')[2]}"
    lines = _lines(daemon.docker("search", f"{where}/busy"))
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == [f"{where}/cais-en/busybox", f"{where}/cais-en/busybox-extra", f"{where}/tools/busytools"]
    assert [line.split()[1] for line in lines[1:]] == ["0"] * 3
    # --limit, --format, filters (catalog results have no stars and are not official)
    assert _lines(daemon.docker("search", "--limit", "1", "--format", "{{.Name}}", f"{where}/busy")) == \
        [f"{where}/cais-en/busybox"]
    assert _lines(daemon.docker("search", "--format", "{{.Name}}", "--filter", "is-official=false",
                                f"{where}/other")) == [f"{where}/cais-en/other"]
    assert _lines(daemon.docker("search", "--format", "{{.Name}}", "-f", "is-official=true", f"{where}/busy")) == []
    assert _lines(daemon.docker("search", "--format", "{{.Name}}", "-f", "stars=1", f"{where}/busy")) == []
    # the same through cais
    env_lines = _lines(daemon.cais("search", "--format", "{{.Name}}\t{{.StarCount}}", f"{where}/extra"))
    assert env_lines == [f"{where}/cais-en/busybox-extra\t0"]
    assert _lines(daemon.cais("search", f"{where}/busy"))[0].split() == ["NAME", "DESCRIPTION", "STARS",
                                                                         "OFFICIAL"]
    for tool in (daemon.docker, daemon.cais):
        assert [line.split() for line in _lines(tool("search", f"{where}/nothing-like-it"))] == \
            [["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]]


def test_search_errors(daemon: Caisd) -> None:
    port = free_port()  # nothing listens there
    for tool in (daemon.docker, daemon.cais):
        done = tool("search", f"localhost:{port}/busy", check=False)
        assert done.returncode != 0
        err = done.stderr.decode()
        assert f"cannot connect to localhost:{port}: Connection refused" in err and "SSLContext" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    for args, message in ((["--limit", "101"], "limit 101 is outside the range of [1, 100]"),
                          (["-f", "colour=blue"], "invalid filter 'colour'"),
                          (["-f", "stars=many"], "invalid filter 'stars=many'"),
                          (["-f", "is-official=maybe"], "invalid filter 'is-official=maybe'")):
        done = daemon.docker("search", *args, f"localhost:{port}/busy", check=False)
        assert done.returncode != 0 and message in done.stderr.decode(), done.stderr
    done = daemon.cais("search", "-f", "stars", f"localhost:{port}/x", check=False)
    assert done.returncode == 125 and b"bad format of filter" in done.stderr


class V1Index:
    """Loopback server answering /v2/ and /v1/search?q=&n= as Docker Hub's index does."""

    ENTRIES = [
        {"name": "busybox", "description": "Busybox base image.", "star_count": 3300, "is_official": True,
         "is_automated": False},
        {"name": "cais/busybox-dev", "description": "A busybox with\na rather long description that goes on",
         "star_count": 2, "is_official": False, "is_automated": True},
        {"name": "cais/busy-nothing", "description": "", "star_count": 0, "is_official": False,
         "is_automated": False},
    ]

    def __init__(self) -> None:
        self.queries: list[dict] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _search(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        q, n = request.query.get("q", ""), int(request.query.get("n", "25"))
        results = [e for e in self.ENTRIES if q in e["name"]][:n]
        return web.json_response({"num_results": len(results), "query": q, "results": results})

    def _run(self, started: threading.Event) -> None:
        async def start() -> None:
            app = web.Application()
            app.router.add_get("/v2/", self._ping)
            app.router.add_get("/v1/search", self._search)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            started.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def index() -> Iterator[V1Index]:
    server = V1Index()
    try:
        yield server
    finally:
        server.close()


def test_v1_search_api(daemon: Caisd, index: V1Index) -> None:
    where = f"127.0.0.1:{index.port}"
    lines = _lines(daemon.docker("search", f"{where}/busy"))
    assert index.queries[-1] == {"q": "busy", "n": "25"}
    rows = [[f"{where}/busybox", "Busybox base image.", "3300", "[OK]"],
            [f"{where}/cais/busybox-dev", "A busybox with a rather long description tha…", "2"],
            [f"{where}/cais/busy-nothing", "0"]]
    assert [re.split(r"\s{2,}", line.rstrip()) for line in lines[1:]] == rows
    assert [re.split(r"\s{2,}", line.rstrip()) for line in _lines(daemon.cais("search", f"{where}/busy"))[1:]] == rows
    long = _lines(daemon.docker("search", "--no-trunc", "--format", "{{.Description}}", f"{where}/dev"))
    assert long == ["A busybox with a rather long description that goes on"]
    assert _lines(daemon.docker("search", "--limit", "2", "--format", "{{.Name}}", f"{where}/busy")) == \
        [f"{where}/busybox", f"{where}/cais/busybox-dev"]
    assert index.queries[-1]["n"] == "2"
    assert _lines(daemon.docker("search", "--format", "{{.Name}}", "-f", "is-official=true", f"{where}/busy")) == \
        [f"{where}/busybox"]
    assert _lines(daemon.docker("search", "--format", "{{.Name}}", "-f", "stars=2", f"{where}/busy")) == \
        [f"{where}/busybox", f"{where}/cais/busybox-dev"]
    # is-automated is deprecated: nothing is automated any more
    assert _lines(daemon.docker("search", "-f", "is-automated=true", "--format", "{{.Name}}", f"{where}/b")) == []
    got = json.loads(_lines(daemon.cais("search", "--format", "json", "--limit", "1", f"{where}/busy"))[0])
    assert got == {"Name": f"{where}/busybox", "Description": "Busybox base image.", "StarCount": "3300",
                   "IsOfficial": "[OK]", "IsAutomated": ""}


def test_search_with_credentials(daemon: Caisd, tls_dir: str) -> None:  # noqa: F811 - the fixture
    """A registry behind TLS and htpasswd: the credentials of X-Registry-Auth open its catalog."""
    auth = {"username": USER, "password": PASSWORD}
    header = {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()}
    with distribution_registry(tls_dir) as reg:
        client = docker.DockerClient(base_url=daemon.host, timeout=60)
        ref = f"{reg.host}/cais-en/secret-busybox"
        try:
            client.images.get("busybox").tag(ref)
            client.images.push(ref, auth_config=auth)
            url = client.api._url("/images/search")
            anonymous = client.api._get(url, params={"term": f"{reg.host}/secret"})
            assert anonymous.status_code == 401 and "UNAUTHORIZED" in anonymous.json()["message"]
            found = client.api._get(url, params={"term": f"{reg.host}/secret"}, headers=header)
            assert found.status_code == 200, found.text
            assert [r["name"] for r in found.json()] == [ref]
        finally:
            client.images.remove(ref)
            client.close()
