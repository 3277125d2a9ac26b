"""The cais CLI: against caisd, in-process without a daemon, output like docker's, fast start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.caisd import VENV_BIN, Caisd


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode().strip()


def test_version_and_help_without_daemon() -> None:
    result = subprocess.run([os.path.join(VENV_BIN, "cais"), "--version"], capture_output=True, check=True)
    assert result.stdout.startswith(b"cais version ")
    bad = subprocess.run([os.path.join(VENV_BIN, "cais"), "frobnicate"], capture_output=True)
    assert bad.returncode == 1 and b"is not a cais command" in bad.stderr and b"Traceback" not in bad.stderr


@pytest.mark.parametrize("args", [["--version"], ["ps"]])
def test_fast_start_imports(daemon: Caisd, args: list[str]) -> None:
    """`cais --version` and `cais ps` import neither aiohttp nor the engine, runtime or image store."""
    code = ("import sys; from cais.cli.main import main; sys.argv = ['cais', *sys.argv[1:]]; rc = main(); "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'rich') or m.startswith("
            "('cais.engine.engine', 'cais.runtime', 'cais.image', 'cais.storage', 'cais.api'))]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            env={**os.environ, "CAIS_HOST": daemon.host}, check=True)
    assert b"HEAVY []" in result.stderr, result.stderr


def test_run_ps_logs_exec_inspect(daemon: Caisd) -> None:
    assert daemon.cais("run", "--rm", "busybox", "echo", "hello").stdout == b"hello\n"
    failed = daemon.cais("run", "--rm", "busybox", "sh", "-c", "exit 6", check=False)
    assert failed.returncode == 6
    cid = out(daemon.cais("run", "-d", "--name", "cais-en-cli", "-e", "X=1", "-l", "k=v", "busybox", "sh", "-c",
                          "echo up; sleep 60"))
    try:
        table = out(daemon.cais("ps"))
        assert table.splitlines()[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                                 "PORTS", "NAMES"]
        assert "cais-en-cli" in table
        assert out(daemon.cais("ps", "-q", "--filter", "label=k=v")) == cid[:12]
        assert out(daemon.cais("ps", "--format", "{{.Names}}\t{{.State}}")) .startswith("cais-en-cli\trunning")
        line = json.loads(out(daemon.cais("ps", "--format", "json")).splitlines()[0])
        assert line["Names"] == "cais-en-cli"
        assert out(daemon.cais("exec", "-e", "Y=2", "-w", "/tmp", "cais-en-cli", "sh", "-c", "echo $X$Y; pwd")) \
            == "12\n/tmp"
        assert out(daemon.cais("inspect", "-f", "{{.Config.Labels.k}} {{.State.Running}}", cid)) == "v true"
        assert out(daemon.cais("logs", cid)) == "up"
        assert "PID" in out(daemon.cais("top", cid))
        assert daemon.cais("stop", "-t", "1", cid).stdout.strip() == cid.encode()
        assert out(daemon.cais("ps", "-a", "--filter", "exited=137", "-q")) == cid[:12]
    finally:
        daemon.cais("rm", "-f", cid, check=False)


def test_errors_are_one_line(daemon: Caisd) -> None:
    for args in (["inspect", "cais-en-missing"], ["rm", "cais-en-missing"], ["run", "--memory", "lots", "busybox"],
                 ["logs"], ["exec", "cais-en-missing", "true"]):
        result = daemon.cais(*args, check=False)
        assert result.returncode != 0
        assert b"Traceback" not in result.stderr and result.stderr.strip(), args


def test_images_cp_and_local_engine(daemon: Caisd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "busybox" in out(daemon.cais("images"))
    cid = out(daemon.cais("create", "busybox", "true"))
    try:
        (tmp_path / "f").write_text("x")
        daemon.cais("cp", str(tmp_path / "f"), f"{cid}:/f")
        daemon.cais("cp", f"{cid}:/f", str(tmp_path / "g"))
        assert (tmp_path / "g").read_text() == "x"
        assert "A /f" in out(daemon.cais("diff", cid))
    finally:
        daemon.cais("rm", cid)


def test_in_process_engine_without_daemon() -> None:
    """No caisd: the command runs the engine in-process on its own roots (like podman)."""
    import secrets
    import shutil
    import tempfile

    from tests.caisd import Caisd as Roots
    from tests.caisd import _remove_cgroups, _stop_supervisor
    from tests.peers import _unmount_under
    root = tempfile.mkdtemp(prefix="cais-en-cli-", dir="/tmp")
    parent = f"/cais-en-{secrets.token_hex(4)}"
    env = {**os.environ, "CAIS_DATA_ROOT": os.path.join(root, "data"), "CAIS_EXEC_ROOT": os.path.join(root, "exec"),
           "CAIS_CGROUP_PARENT": parent}
    env.pop("CAIS_HOST", None)
    env.pop("DOCKER_HOST", None)
    cais = os.path.join(VENV_BIN, "cais")
    roots = Roots(root=root, sock="", cgroup_parent=parent)
    try:
        if os.path.exists("/run/cais/cais.sock"):
            pytest.skip("a system caisd runs: the CLI would talk to it")
        subprocess.run([cais, "image", "bootstrap", "busybox"], env=env, check=True, capture_output=True, timeout=120)
        result = subprocess.run([cais, "run", "--rm", "busybox", "echo", "in-process"], env=env,
                                capture_output=True, timeout=120)
        assert result.stdout == b"in-process\n", result.stderr
        assert subprocess.run([cais, "ps", "-aq"], env=env, capture_output=True, timeout=60).stdout == b""
    finally:
        _stop_supervisor(roots)
        _unmount_under(root)
        _remove_cgroups(parent)
        shutil.rmtree(root, ignore_errors=True)
