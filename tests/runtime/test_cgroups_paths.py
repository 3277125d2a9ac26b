"""cgroupsPath interpretation, compared with what runc does with the same strings."""

from __future__ import annotations

import pytest

from cais.runtime.cgroups import CgroupError
from cais.runtime.cgroups.paths import clean_path, expand_slice, inner_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/docker/abc", "/docker/abc"),
        ("/a/../../b", "/b"),
        ("../../etc/x", "etc/x"),
        ("a/./b//c/", "a/b/c"),
        ("", ""),
    ],
)
def test_clean_path_cannot_climb(given: str, expected: str) -> None:
    assert clean_path(given) == expected


def test_empty_path_is_the_container_id_relative() -> None:
    assert inner_path(None, "ctr1") == "ctr1"
    assert inner_path("", "ctr1") == "ctr1"


@pytest.mark.parametrize("bad", ["/", "..", "/.."])
def test_root_of_the_hierarchy_is_refused(bad: str) -> None:
    with pytest.raises(CgroupError, match="root of the hierarchy"):
        inner_path(bad, "ctr1")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("system.slice:docker:1234", "/system.slice/docker-1234.scope"),
        ("machine-libpod_pod_1.slice:libpod:ab", "/machine.slice/machine-libpod_pod_1.slice/libpod-ab.scope"),
        ("-.slice:cais:x", "/cais-x.scope"),
        (":cri:x", "/system.slice/cri-x.scope"),
        (None, "/system.slice/runc-ID.scope"),
    ],
)
def test_systemd_paths_map_onto_cgroupfs(given: str | None, expected: str) -> None:
    assert inner_path(given, "ID", systemd=True) == expected


@pytest.mark.parametrize("bad", ["/docker/abc", "a:b", "bad:docker:x", "a-.slice:p:x", "x.slice:p:a/b"])
def test_bad_systemd_paths_are_clear_errors(bad: str) -> None:
    with pytest.raises(CgroupError):
        inner_path(bad, "ID", systemd=True)


def test_expand_slice() -> None:
    assert expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert expand_slice("-.slice") == "/"
