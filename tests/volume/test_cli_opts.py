"""The CLI's -v/--mount/--tmpfs parsing, as docker's CLI sends them."""

from __future__ import annotations

import os
import re

import pytest

from cais.cli import mountopts
from cais.cli.main import CliError


def test_binds_and_anonymous() -> None:
    binds, volumes = mountopts.binds(["/anon", "name:/n", "./here:/h:ro", "/abs:/a"])
    assert volumes == {"/anon": {}}
    assert binds == ["name:/n", f"{os.path.abspath('./here')}:/h:ro", "/abs:/a"]


def test_mount() -> None:
    assert mountopts.mount("type=bind,src=/s,dst=/d,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/s", "Target": "/d", "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}}
    assert mountopts.mount("source=v,target=/t,volume-nocopy,volume-opt=type=tmpfs,volume-label=a=b") == {
        "Type": "volume", "Source": "v", "Target": "/t", "VolumeOptions": {
            "NoCopy": True, "DriverConfig": {"Options": {"type": "tmpfs"}}, "Labels": {"a": "b"}}}
    assert mountopts.mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}}


@pytest.mark.parametrize("spec, message", [
    ("type=bind,source=/s", "target is required"),
    ("type=bind,target=/t,colour=red", "unexpected key 'colour'"),
    ("type=bind,target", "must be a key=value pair"),
    ("type=volume,target=/t,bind-propagation=shared", "cannot mix 'bind-*'"),
    ("type=bind,target=/t,tmpfs-size=1m", "cannot mix 'tmpfs-*'"),
    ("type=tmpfs,target=/t,tmpfs-mode=9z", "invalid value for tmpfs-mode"),
    ("type=tmpfs,target=/t,readonly=maybe", "invalid value for readonly"),
])
def test_bad_mount(spec: str, message: str) -> None:
    with pytest.raises(CliError, match=re.escape(message)) as e:
        mountopts.mount(spec)
    assert e.value.status == 125
