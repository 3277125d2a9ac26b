"""Containers as an unprivileged user without capabilities, through both CLIs and the engine."""

from __future__ import annotations

from tests.caisd import Caisd


def test_user_without_capabilities_runs_and_execs(daemon: Caisd) -> None:
    flags = ("--user", "65534", "--cap-drop", "ALL")
    expected = b"uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"  # as dockerd
    assert daemon.cais("run", "--rm", *flags, "busybox", "id").stdout == expected
    assert daemon.docker("run", "--rm", *flags, "busybox", "id").stdout == expected
    assert daemon.docker("run", "--rm", *flags, "--security-opt", "no-new-privileges", "busybox",
                         "id").stdout == expected
    # a workdir only root may enter is entered before the user switch, as runc does
    assert daemon.docker("run", "--rm", *flags, "-w", "/root", "busybox", "pwd").stdout == b"/root\n"
    cid = daemon.docker("run", "-d", *flags, "busybox", "sleep", "300").stdout.decode().strip()
    try:
        assert daemon.docker("exec", cid, "id").stdout == expected
    finally:
        daemon.docker("rm", "-f", cid, check=False)


def test_containers_that_exit_at_once_are_never_left_running(daemon: Caisd) -> None:
    """An exit reported before start() recorded the container running is applied, not dropped
    (it left `run --rm … true` hanging with the container shown Up)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: daemon.cais("run", "--rm", "busybox", "true", check=False, timeout=30),
                                range(12)))
    assert [r.returncode for r in results] == [0] * 12
    assert daemon.docker("ps", "-aq", "--filter", "ancestor=busybox", "--filter", "status=running").stdout == b""
