"""`docker cp` with the docker CLI against caisd: symlinks in the container (absolute, `..` chains,
loops, dangling, symlinked parents), volumes and bind mounts of stopped and running containers, the
symlink-swap race from a second container sharing a volume — and the same copies against dockerd,
whose answers (what lands where, names in the tar, error messages) cais must give too."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd
from tests.peers import Dockerd, dockerd

# A stopped container's tree full of symlinks; /data is a volume, /mnt a bind mount.
SETUP = ("mkdir -p /d/sub /target && echo t > /target/f && ln -s /target /abs && ln -s ../../../../target /rel "
         "&& ln -s /loop /loop && ln -s /nope/x /dangling && ln -s ../target /d/up && echo s > /d/sub/file "
         "&& ln -s f /target/flink && mkdir /data/in && echo v > /data/in/v && ln -s /target /data/tl")
GETS = ["/abs", "/abs/", "/abs/.", "/rel/", "/rel/f", "/loop", "/loop/x", "/dangling", "/dangling/", "/d/up",
        "/d/up/f", "/nope", "/d/../abs", "/d/sub/.", "/data", "/data/in/.", "/data/tl/", "/mnt/.", "/mnt/hf"]
PUTS = ["/abs/", "/abs", "/rel/new", "/dangling", "/d/up/g", "/d", "/newdir", "/data/", "/data/tl/",
        "/mnt/put", "/nope/x/y", "/d/sub/file/x"]
KEEP = ("target", "d", "nope", "newdir", "abs", "rel", "dangling", "loop", "data")


def _docker(d: Caisd | Dockerd, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", "-H", d.host, *args], capture_output=True, timeout=120)


def _names(data: bytes) -> list[tuple[str, str, str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted((m.name, m.type.decode(), m.linkname) for m in tar)


def _stderr(p: subprocess.CompletedProcess[bytes], name: str) -> str:
    """The daemon's answer; the CLI's own log lines (timestamps, a closed pipe) vary from run to run,
    and dockerd names the looping link by its host path (cais by the path asked for: the kernel does
    not say which component looped, and the host's paths are none of the client's business)."""
    lines = [line for line in p.stderr.decode().splitlines() if "level=error" not in line]
    return re.sub(r"too many links in \S+", "too many links in …", "\n".join(lines).replace(name, "C"))


def cp_matrix(d: Caisd | Dockerd, bind: str, src: str) -> dict:
    """Every copy of GETS and PUTS on a stopped container, what the container holds after, and
    copies into a container with a read-only root file system and a read-only volume."""
    name, vol = f"cais-en-cp-{secrets.token_hex(3)}", f"cais-en-cpv-{secrets.token_hex(3)}"
    out: dict = {}
    assert _docker(d, "run", "--name", name, "-v", f"{vol}:/data", "-v", f"{bind}:/mnt", "busybox", "sh", "-c",
                   SETUP).returncode == 0
    try:
        for path in GETS:
            for flags in ([], ["-L"]):
                p = _docker(d, "cp", *flags, f"{name}:{path}", "-")
                out[("get", path, *flags)] = (p.returncode, _stderr(p, name), _names(p.stdout) if not p.returncode
                                              else None)
        for path in PUTS:
            for what in ("pf", "pd", "pd/."):
                p = _docker(d, "cp", os.path.join(src, what), f"{name}:{path}")
                out[("put", what, path)] = (p.returncode, _stderr(p, name))
        with tarfile.open(fileobj=io.BytesIO(_docker(d, "export", name).stdout)) as tar:
            out["tree"] = sorted(m.name.lstrip("/") for m in tar if m.name.lstrip("/").split("/")[0] in KEEP)
        out["volume"] = sorted(_docker(d, "run", "--rm", "-v", f"{vol}:/data", "busybox", "find", "/data")
                               .stdout.decode().split())
        out["bind"] = sorted(os.listdir(bind))
        # a read-only root file system takes copies into its writable volumes only
        assert _docker(d, "create", "--name", f"{name}-ro", "--read-only", "-v", f"{vol}:/data",
                       "-v", f"{vol}:/ro:ro", "busybox", "true").returncode == 0
        for path in ("/data/", "/tmp/", "/ro/", "/data/../tmp/", "/ro/in"):
            p = _docker(d, "cp", os.path.join(src, "pf"), f"{name}-ro:{path}")
            out[("put-ro", path)] = (p.returncode, _stderr(p, f"{name}-ro"))
    finally:
        _docker(d, "rm", "-f", name, f"{name}-ro")
        _docker(d, "volume", "rm", vol)
    return out


@pytest.fixture
def src() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cais-en-cpsrc-") as s:
        with open(os.path.join(s, "pf"), "w") as f:
            f.write("p")
        os.mkdir(os.path.join(s, "pd"))
        with open(os.path.join(s, "pd", "inner"), "w") as f:
            f.write("i")
        yield s


def _bind_dir() -> str:
    d = tempfile.mkdtemp(prefix="cais-en-cpbind-")
    with open(os.path.join(d, "hf"), "w") as f:
        f.write("h")
    return d


@pytest.mark.peers
def test_cp_on_a_stopped_container_as_dockerd(daemon: Caisd, src: str) -> None:
    """Symlinks, `..`, loops, trailing `/` and `/.`, volumes and binds: what lands where, the names
    in the tar and the errors are dockerd's."""
    ours_bind, theirs_bind = _bind_dir(), _bind_dir()
    try:
        ours = cp_matrix(daemon, ours_bind, src)
        image = daemon.docker("save", "busybox").stdout
        with dockerd() as d:
            d.docker("load", input=image)
            theirs = cp_matrix(d, theirs_bind, src)
    finally:
        for b in (ours_bind, theirs_bind):
            subprocess.run(["rm", "-rf", b], check=False)
    assert ours["volume"] == ["/data", "/data/in", "/data/in/v", "/data/inner", "/data/pd", "/data/pd/inner",
                              "/data/pf", "/data/tl"]  # a stopped container's volume, seen by the copy
    assert "put" in ours["bind"]  # and its bind mount
    # dockerd's tar of "/" holds its init layer (/.dockerenv…) and names entries "/x"; ours "./x"
    differ = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k] and k[:2] != ("get", "/")}
    assert differ == {}


@pytest.fixture
def host_dir() -> Iterator[str]:
    """A host directory with a secret: no copy may read it or write next to it."""
    with tempfile.TemporaryDirectory(prefix="cais-en-cphost-", dir="/tmp") as d:
        with open(os.path.join(d, "secret"), "w") as f:
            f.write("cais-en-host-secret")
        yield d


def test_running_container_volume_paths_resolve_in_its_mount_namespace(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, vol = f"cais-en-cp-{secrets.token_hex(3)}", f"cais-en-cpv-{secrets.token_hex(3)}"
    daemon.docker("run", "-d", "--name", name, "-v", f"{vol}:/data", "busybox", "sh", "-c",
                  "echo inside > /etc/cais-mark; ln -s /etc /data/etc; sleep 600")
    try:
        for _ in range(100):  # the shell writes the mark and the link just after `run -d` returns
            if daemon.docker("exec", name, "test", "-e", "/data/etc/cais-mark", check=False).returncode == 0:
                break
            time.sleep(0.1)
        # /data/etc -> /etc, followed in the container's view: its own /etc, not the host's
        out = daemon.docker("cp", f"{name}:/data/etc/cais-mark", "-").stdout
        assert _names(out) == [("cais-mark", "0", "")]
        assert b"inside" in out
        got = subprocess.run(["docker", "-H", daemon.host, "cp", f"{name}:/data/etc/hostname", "-"],
                             capture_output=True, check=True).stdout
        with open("/etc/hostname", "rb") as f:
            assert f.read().strip() not in got or name[:12].encode() in got
        (tmp_path / "into").write_text("via the volume\n")
        daemon.docker("cp", str(tmp_path / "into"), f"{name}:/data/etc/")  # through the link, into /etc
        assert daemon.docker("exec", name, "cat", "/etc/into").stdout == b"via the volume\n"
        assert not os.path.exists("/etc/into")
        daemon.docker("cp", str(tmp_path / "into"), f"{name}:/data/")
        assert daemon.docker("exec", name, "cat", "/data/into").stdout == b"via the volume\n"
        state = json.loads(daemon.docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["Running"] and not state["Paused"]
    finally:
        daemon.docker("rm", "-f", name, check=False)
        daemon.docker("volume", "rm", vol, check=False)


def test_symlink_swapped_by_a_second_container_sharing_a_volume(daemon: Caisd, host_dir: str) -> None:
    """CVE-2018-15664 with a twist freezing cannot stop: the copy's container is frozen, but another
    container sharing the volume swaps /vol/d for a symlink to / in a loop. Every path is resolved
    by the kernel inside the copied container's root, so the swap only ever leads into that root."""
    from tests.security.test_attacks import _raw_get, put, tar_of

    secret = os.path.join(host_dir, "secret")
    vol, copied, swapper = (f"cais-en-cp{k}-{secrets.token_hex(3)}" for k in ("v", "a", "b"))
    daemon.docker("run", "-d", "--name", swapper, "-v", f"{vol}:/vol", "busybox", "sh", "-c",
                  f"mkdir -p /vol/d{host_dir} && echo decoy > /vol/d{secret}; "
                  "while true; do mv /vol/d /vol/p; ln -s / /vol/d; rm /vol/d; mv /vol/p /vol/d; done")
    daemon.docker("run", "-d", "--name", copied, "-v", f"{vol}:/vol", "busybox", "sleep", "600")
    try:
        answers = set()
        for i in range(80):
            status, data = _raw_get(daemon, f"/v1.50/containers/{copied}/archive?path=/vol/d{secret}")
            assert b"cais-en-host-secret" not in data
            answers.add(status)
            put(daemon, copied, f"/vol/d{host_dir}", tar_of(("file", f"escaped{i}", b"x")))
            put(daemon, copied, "/vol/d", tar_of(("file", f"{host_dir.lstrip('/')}/escaped-deep{i}", b"x")))
        assert os.listdir(host_dir) == ["secret"]
        assert answers <= {200, 404}  # the decoy, or nothing while /vol/d is away or the link
        assert daemon.ping()
    finally:
        daemon.docker("rm", "-f", swapper, copied, check=False)
        daemon.docker("volume", "rm", vol, check=False)


def test_cais_cp_to_a_symlink_copies_where_it_leads_as_docker_cp(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = f"cais-en-cp-{secrets.token_hex(3)}"
    daemon.docker("run", "--name", name, "busybox", "sh", "-c",
                  "mkdir -p /target/in && ln -s /target /abs && ln -s target/in /rel")
    try:
        (tmp_path / "by-cais").write_text("c")
        (tmp_path / "by-docker").write_text("d")
        daemon.cais("cp", str(tmp_path / "by-cais"), f"{name}:/abs")
        daemon.docker("cp", str(tmp_path / "by-docker"), f"{name}:/abs")
        daemon.cais("cp", str(tmp_path / "by-cais"), f"{name}:/rel")
        daemon.docker("cp", str(tmp_path / "by-docker"), f"{name}:/rel")
        names = [n for n, kind, _ in _names(daemon.docker("cp", f"{name}:/", "-").stdout)
                 if n.split("/")[1:2] in (["abs"], ["rel"], ["target"])]
        assert names == ["./abs", "./rel", "./target", "./target/by-cais", "./target/by-docker", "./target/in",
                         "./target/in/by-cais", "./target/in/by-docker"]
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_cp_on_a_stopped_container_whose_bind_source_is_gone(daemon: Caisd) -> None:
    name = f"cais-en-cp-{secrets.token_hex(3)}"
    gone = tempfile.mkdtemp(prefix="cais-en-cpgone-")
    daemon.docker("create", "--name", name, "-v", f"{gone}:/mnt", "busybox", "true")
    try:
        os.rmdir(gone)
        p = _docker(daemon, "cp", f"{name}:/etc/passwd", "-")
        assert p.returncode == 1 and b"Traceback" not in p.stderr
        assert p.stderr.decode().strip() == (f"Error response from daemon: mounting the container's volumes for the "
                                             f"copy: No such file or directory: {gone}")
        assert daemon.ping()
    finally:
        daemon.docker("rm", "-f", name, check=False)
