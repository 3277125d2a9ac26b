"""docker-compose and Testcontainers against a caisd with bridge networking, in a sandbox.

caisd (its supervisor and every container) runs inside a fresh network namespace that plays
"the host" (tests/network/conftest.py): the project's bridges, nft rules and published ports
live there, and the test's own sockets reach them on the sandbox's loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd, caisd
from tests.network.conftest import sandboxed

PROJECT = "cais-co"


@pytest.fixture(scope="package")
def d() -> Iterator[Caisd]:
    with sandboxed(prefix="cais-co-nt"), caisd(network_args=[], prefix="cais-co") as daemon:
        yield daemon


@pytest.fixture
def project_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="cais-co-proj-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Compose:
    """`docker-compose -p PROJECT` (Debian's 1.29, on docker-py) in `cwd`, talking to caisd."""

    def __init__(self, d: Caisd, cwd: str, project: str = PROJECT) -> None:
        if shutil.which("docker-compose") is None:
            pytest.skip("docker-compose is not installed (Debian package docker-compose)")
        self.d, self.cwd, self.project = d, cwd, project

    def argv(self, *args: str) -> list[str]:
        return ["docker-compose", "--ansi", "never", "-p", self.project, *args]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.d.host, **(extra or {})}

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), cwd=self.cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=self.env(env))
        if check and done.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A long-running command (`events`, `logs -f`): stdout piped, stopped by the caller."""
        return subprocess.Popen(self.argv(*args), cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, text=True, env=self.env())

    def __call__(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout  # type: ignore[arg-type]

    def down(self) -> None:
        """Whatever a failed test left: containers, networks, volumes of the project."""
        self.run("down", "-v", "--remove-orphans", "-t", "1", check=False)
        ids = self.d.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                            check=False).stdout.split()
        if ids:
            self.d.docker("rm", "-fv", *[i.decode() for i in ids], check=False)
