"""`docker cp -a` / `cais cp -a` (copyUIDGID) and `-L`, against dockerd 20.10 side by side.

Without -a, what is copied into a container keeps the archive's owners (dockerd does exactly that,
whatever its docs say); with -a, everything copied gets the container's user (Config.User) and
its primary group — looked up in the container's own /etc/passwd and /etc/group (dockerd looks
in the host's: docs/docker-parity.md). Copies out are the client's to own (root here), -a or not.
"""

from __future__ import annotations

import io
import os
import pwd
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

import pytest

from tests.caisd import VENV_BIN, Caisd
from tests.peers import Dockerd, dockerd

FLAGS = ([], ["-a"], ["-L"], ["-a", "-L"])


@pytest.fixture
def src() -> Iterator[str]:
    """f, d/{inner,sub/x} owned by 1234:5678, and `link` → f."""
    s = tempfile.mkdtemp(prefix="cais-eg-cpsrc-")
    try:
        os.makedirs(f"{s}/d/sub")
        for p in ("f", "d/inner", "d/sub/x"):
            with open(f"{s}/{p}", "w") as f:
                f.write(p)
        for p in ("f", "d", "d/inner", "d/sub", "d/sub/x"):
            os.chown(f"{s}/{p}", 1234, 5678)
        os.symlink("f", f"{s}/link")
        yield s
    finally:
        shutil.rmtree(s, ignore_errors=True)


def _owners(d: Caisd | Dockerd, name: str) -> dict[str, tuple[int, int, str, str]]:
    with tarfile.open(fileobj=io.BytesIO(d.docker("export", name).stdout)) as tar:
        return {m.name.lstrip("/"): (m.uid, m.gid, m.type.decode(), m.linkname) for m in tar
                if m.name.lstrip("/").startswith("tmp/")}


def _local(top: str) -> dict[str, tuple[int, int, bool]]:
    out = {}
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            out[os.path.relpath(os.path.join(root, n), top)] = (st.st_uid, st.st_gid, os.path.islink(os.path.join(root, n)))
    return out


def cp_owners(d: Caisd | Dockerd, src: str, user: str, cli: list[str]) -> dict:
    """Copies of f, d and link into a container made with `--user user`, with each of FLAGS, by
    the client `cli`; what the container holds after; copies of them out again."""
    name = f"cais-eg-cpa-{secrets.token_hex(3)}"
    out: dict = {}
    d.docker("create", "--name", name, *(["--user", user] if user else []), "busybox", "true")
    back = tempfile.mkdtemp(prefix="cais-eg-cpout-")
    try:
        for flags in FLAGS:
            tag = "".join(flags)
            for what in ("f", "d", "link"):
                p = subprocess.run([*cli, "cp", *flags, f"{src}/{what}", f"{name}:/tmp/{what}{tag}"],
                                   capture_output=True, timeout=60)
                out[("in", what, tag)] = (p.returncode, p.stderr.decode().strip())
            if flags == ["-L"]:
                continue
            os.mkdir(f"{back}/o{tag}")
            for what, dest in (("d", ""), ("link", ""), ("link", "linkcopy"), ("d", "dcopy")):
                p = subprocess.run([*cli, "cp", *flags, f"{name}:/tmp/{what}", f"{back}/o{tag}/{dest}"],
                                   capture_output=True, timeout=60)
                out[("out", what, dest, tag)] = (p.returncode, p.stderr.decode().strip())
        out["container"] = _owners(d, name)
        out["local"] = _local(back)
    finally:
        d.docker("rm", "-f", name, check=False)
        shutil.rmtree(back, ignore_errors=True)
    return out


def _docker_cli(d: Caisd | Dockerd) -> list[str]:
    return ["docker", "-H", d.host]


@pytest.mark.peers
def test_cp_owners_as_dockerd(daemon: Caisd, src: str) -> None:
    """Root containers and a `--user nobody` one (a name both the image and this host give
    65534:65534, so dockerd's host lookup cannot differ): the same owners and names as dockerd."""
    try:
        host_nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this host has no user nobody")
    if (host_nobody.pw_uid, host_nobody.pw_gid) != (65534, 65534):
        pytest.skip("this host's nobody is not 65534:65534 as busybox's")
    ours = {user: cp_owners(daemon, src, user, _docker_cli(daemon)) for user in ("", "nobody")}
    image = daemon.docker("save", "busybox").stdout
    with dockerd() as d:
        d.docker("load", input=image)
        theirs = {user: cp_owners(d, src, user, _docker_cli(d)) for user in ("", "nobody")}
    assert ours == theirs
    got = ours["nobody"]["container"]
    assert got["tmp/f"][:2] == got["tmp/d/sub/x"][:2] == (1234, 5678)  # no -a: the archive's owners
    assert got["tmp/f-a"][:2] == got["tmp/d-a/sub/x"][:2] == got["tmp/link-a"][:2] == (65534, 65534)
    assert got["tmp/link-L"] == (1234, 5678, "0", "") and got["tmp/link"][2:] == ("2", "f")
    assert ours[""]["container"]["tmp/f-a"][:2] == (1234, 5678)  # root container: -a changes nothing
    assert ours["nobody"]["local"]["o-a/linkcopy"] == (0, 0, True)


def test_cais_cp_as_docker_cp(daemon: Caisd, src: str) -> None:
    """`cais cp` with -a and -L, both ways: what docker cp does against the same caisd."""
    cais = [os.path.join(VENV_BIN, "cais"), "--host", daemon.host]
    for user in ("", "nobody"):
        assert cp_owners(daemon, src, user, cais) == cp_owners(daemon, src, user, _docker_cli(daemon))


def test_cp_a_looks_the_user_up_in_the_container(daemon: Caisd, src: str) -> None:
    """A user only the container knows, a uid:gid the host lacks, and a name nobody has."""
    base = f"cais-eg-cpu-{secrets.token_hex(3)}"
    try:
        daemon.docker("run", "--name", base, "busybox", "sh", "-c",
                      "echo cais-eg:x:4321:4322::/home:/bin/sh >> /etc/passwd; echo cais-eg-g:x:4322: >> /etc/group")
        image = f"{base}:1"
        daemon.docker("commit", base, image)
        for user, owner in (("cais-eg", (4321, 4322)), ("cais-eg:cais-eg-g", (4321, 4322)), ("1000:1001", (1000, 1001)),
                            ("4321", (4321, 4322)), ("cais-eg:0", (4321, 0))):
            name = f"{base}-{secrets.token_hex(2)}"
            daemon.docker("create", "--name", name, "--user", user, image, "true")
            try:
                daemon.docker("cp", "-a", f"{src}/d", f"{name}:/tmp/d")
                got = _owners(daemon, name)
                assert {v[:2] for k, v in got.items() if k.startswith("tmp/d")} == {owner}, user
            finally:
                daemon.docker("rm", "-f", name, check=False)
        name = f"{base}-run"  # a running container: its user looked up through its own root
        daemon.docker("run", "-d", "--name", name, "--user", "cais-eg", image, "sleep", "60")
        try:
            daemon.docker("cp", "-a", f"{src}/f", f"{name}:/tmp/f")
            assert daemon.docker("exec", name, "stat", "-c", "%u:%g", "/tmp/f").stdout == b"4321:4322\n"
        finally:
            daemon.docker("rm", "-f", name, check=False)
        name = f"{base}-x"
        daemon.docker("create", "--name", name, "--user", "cais-eg-nobody", image, "true")
        try:
            p = daemon.docker("cp", "-a", f"{src}/f", f"{name}:/tmp/", check=False)
            assert p.returncode == 1 and p.stderr.decode().strip() == (
                "Error response from daemon: unable to find user cais-eg-nobody: no matching entries in passwd file")
            assert daemon.docker("cp", f"{src}/f", f"{name}:/tmp/").returncode == 0  # without -a: no lookup
        finally:
            daemon.docker("rm", "-f", name, check=False)
    finally:
        daemon.docker("rm", "-f", base, check=False)
        daemon.docker("rmi", f"{base}:1", check=False)
