"""Containers as an unprivileged user without capabilities, through both CLIs and the engine."""

from __future__ import annotations

from tests.caisd import Caisd


def test_user_without_capabilities_runs_and_execs(daemon: Caisd) -> None:
    flags = ("--user", "65534", "--cap-drop", "ALL")
    expected = b"uid=65534(nobody) gid=65534(nogroup)\n"
    assert daemon.cais("run", "--rm", *flags, "busybox", "id").stdout == expected
    assert daemon.docker("run", "--rm", *flags, "busybox", "id").stdout == expected
    assert daemon.docker("run", "--rm", *flags, "--security-opt", "no-new-privileges", "busybox",
                         "id").stdout == expected
    cid = daemon.docker("run", "-d", *flags, "busybox", "sleep", "300").stdout.decode().strip()
    try:
        assert daemon.docker("exec", cid, "id").stdout == expected
    finally:
        daemon.docker("rm", "-f", cid, check=False)
