"""The same mount flags against dockerd 20.10 (tests/peers.py) and caisd: same `Mounts`, same refusals."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd
from tests.peers import Dockerd, dockerd

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def peer(daemon: Caisd) -> Iterator[Dockerd]:
    image = daemon.docker("save", "busybox").stdout
    with dockerd() as d:
        d.docker("load", input=image)
        yield d


def _mounts(run, vo_dir: str, args: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    cid = run("create", *args, "busybox", "true").stdout.decode().strip()
    try:
        mounts = json.loads(run("inspect", "-f", "{{json .Mounts}}", cid).stdout)
    finally:
        run("rm", "-v", cid)
    for m in mounts:
        if m.get("Name") and re.fullmatch(r"[0-9a-f]{64}", m["Name"]):
            m["Name"] = "<anonymous>"
        if m["Type"] == "volume":
            m["Source"] = "<volume path>"
    return sorted(mounts, key=lambda m: m["Destination"])


CASES = [
    ["-v", "cais-vo-peer:/data"],
    ["-v", "/anon"],
    ["-v", "{dir}:/h:ro"],
    ["-v", "{dir}:/h:rw,z"],
    ["-v", "cais-vo-peer:/data:ro,nocopy"],
    ["--mount", "type=bind,src={dir},dst=/b,readonly"],
    ["--mount", "type=volume,src=cais-vo-peer2,dst=/v,volume-nocopy"],
    ["--mount", "type=volume,dst=/anon2"],
    ["--mount", "type=tmpfs,dst=/t,tmpfs-size=1m"],
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_same_mounts_as_docker(daemon: Caisd, peer: Dockerd, vo_dir: str, case: list[str]) -> None:
    args = [a.format(dir=vo_dir) for a in case]
    try:
        ours = _mounts(lambda *a: daemon.docker(*a), vo_dir, args)
        theirs = _mounts(lambda *a: peer.docker(*a), vo_dir, args)
        assert ours == theirs
    finally:
        for d in (daemon, peer):
            d.docker("volume", "rm", "cais-vo-peer", "cais-vo-peer2", check=False)


BAD = [
    ["-v", "bad/name:/x"],
    ["-v", "cais-vo-peer:relative"],
    ["-v", "/ctr:ro"],
    ["-v", "a:b:c:d"],
    ["--mount", "type=bind,src=/cais-vo-nowhere,dst=/x"],
    ["--mount", "type=tmpfs,src=x,dst=/x"],
    ["-v", "{dir}:/x", "-v", "cais-vo-peer:/x"],
    ["--mount", "type=volume,src=cais-vo-peer,dst=/x,volume-driver=cais-vo-none"],
]


@pytest.mark.parametrize("case", BAD, ids=[" ".join(c) for c in BAD])
def test_same_refusals_as_docker(daemon: Caisd, peer: Dockerd, vo_dir: str, case: list[str]) -> None:
    args = [a.format(dir=vo_dir) for a in case]
    for d in (daemon, peer):
        r = d.docker("create", *args, "busybox", "true", check=False)
        assert r.returncode != 0, (d, r.stdout)
        if r.stdout.strip():
            d.docker("rm", "-f", r.stdout.decode().strip(), check=False)
        d.docker("volume", "rm", "cais-vo-peer", check=False)
    assert not os.path.exists("/cais-vo-nowhere")


def test_same_volume_document_as_docker(daemon: Caisd, peer: Dockerd) -> None:
    docs = []
    for d in (daemon, peer):
        d.docker("volume", "create", "--label", "a=b", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m",
                 "cais-vo-doc")
        try:
            docs.append(json.loads(d.docker("volume", "inspect", "cais-vo-doc").stdout)[0])
        finally:
            d.docker("volume", "rm", "cais-vo-doc", check=False)
    ours, theirs = docs
    assert set(ours) == set(theirs)
    for key in ("Driver", "Labels", "Name", "Options", "Scope"):
        assert ours[key] == theirs[key]
    assert ours["Mountpoint"].endswith("/volumes/cais-vo-doc/_data") and theirs["Mountpoint"].endswith(
        "/volumes/cais-vo-doc/_data")
