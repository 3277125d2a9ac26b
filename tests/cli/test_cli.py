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


# what the everyday commands never import: the engine's side, and the standard library's heavy
# modules (json.decoder compiles regexes, re imports enum; typing, collections, functools, …)
_HEAVY = ("aiohttp", "rich", "cais.engine.engine", "cais.runtime", "cais.image", "cais.storage", "cais.api", "json",
          "re", "enum", "typing", "collections", "functools", "dataclasses", "datetime", "contextlib", "base64",
          "socket", "selectors", "threading", "signal", "importlib.util", "argparse", "subprocess", "shlex")


@pytest.mark.parametrize("args", [["--version"], ["ps"], ["ps", "-a", "--format", "json"], ["images"],
                                  ["ps", "--format", "table {{.ID}}\t{{.RunningFor}}"], ["inspect", "-f", "{{.Id}}", "BOX"],
                                  ["run", "--rm", "busybox", "true"], ["run", "--rm", "-e", "A=1", "busybox", "true"],
                                  ["exec", "BOX", "true"], ["inspect", "BOX"], ["rm", "BOX2"]])
def test_fast_start_imports(daemon: Caisd, args: list[str]) -> None:
    """The client's everyday commands import neither the engine nor the heavy standard modules."""
    code = ("import sys; from cais.cli.main import main; sys.argv = ['cais', *sys.argv[1:]]; rc = main(); "
            f"heavy = [m for m in sys.modules if m in {_HEAVY!r} or m.startswith({tuple(h + '.' for h in _HEAVY)!r})]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    box = out(daemon.cais("run", "-d", "busybox", "sleep", "60")) if "BOX" in args else None
    box2 = out(daemon.cais("create", "busybox")) if "BOX2" in args else None
    try:
        args = [{"BOX": box, "BOX2": box2}.get(a, a) for a in args]
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                                env={**os.environ, "CAIS_HOST": daemon.host}, check=True)
    finally:
        for c in (box, box2):
            if c:
                daemon.cais("rm", "-f", c, check=False)
    assert b"HEAVY []" in result.stderr, result.stderr


def test_run_imports_only_its_own_path(daemon: Caisd) -> None:
    """`run` unmarshals neither the other container commands (containers.py, ~40 kB of bytecode)
    nor the mount flags' parsing when no -v/--mount/--tmpfs is given."""
    code = ("import sys; from cais.cli.main import main; sys.argv = ['cais', *sys.argv[1:]]; rc = main(); "
            "print('CAIS', sorted(m for m in sys.modules if m.startswith('cais')), file=sys.stderr); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, "run", "--rm", "busybox", "true"], capture_output=True,
                            env={**os.environ, "CAIS_HOST": daemon.host}, check=True)
    imported = result.stderr.decode().split("CAIS ", 1)[1]
    assert "cais.cli.commands.run" in imported
    assert "cais.cli.commands.containers" not in imported and "cais.cli.mountopts" not in imported, imported


def test_output_reader_gone_is_quiet(daemon: Caisd) -> None:
    """`cais logs C | head -1`: the reader goes away; no word about the daemon (it is not the one
    that broke the pipe), as `_stdout_gone` meant."""
    cid = out(daemon.cais("run", "-d", "busybox", "seq", "1", "100000"))
    try:
        daemon.cais("wait", cid)
        r, w = os.pipe()
        os.close(r)
        try:
            result = subprocess.run([os.path.join(VENV_BIN, "cais"), "logs", cid], stdout=w, stderr=subprocess.PIPE,
                                    env={**os.environ, "CAIS_HOST": daemon.host}, timeout=60)
        finally:
            os.close(w)
        assert (result.returncode, result.stderr) == (0, b"")
    finally:
        daemon.cais("rm", "-f", cid, check=False)


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


def test_unreachable_daemon_is_one_line() -> None:
    for args in (["run", "--rm", "busybox", "true"], ["ps"], ["pull", "busybox"]):
        result = subprocess.run([os.path.join(VENV_BIN, "cais"), "-H", "unix:///nonexistent/cais-en.sock", *args],
                                capture_output=True)
        assert result.returncode == 1 and b"Traceback" not in result.stderr, result.stderr
        assert result.stderr.decode().strip() == ("Cannot connect to the cais daemon at "
                                                  "unix:///nonexistent/cais-en.sock: No such file or directory")


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


@pytest.mark.peers
def test_older_daemon_api_is_negotiated(busybox_dir: str, tmp_root: str) -> None:
    """dockerd 20.10 speaks API 1.41: refused as too new, the CLI asks /_ping for the daemon's version
    and goes on in it (caisd speaks ours: no ping there); DOCKER_API_VERSION pins the version."""
    from tests.peers import dockerd
    tar = os.path.join(tmp_root, "busybox.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)
    with dockerd() as d:
        d.docker("import", tar, "cais-cl-busybox:latest")
        env = {**os.environ, "CAIS_HOST": d.host}
        env.pop("DOCKER_API_VERSION", None)

        def cais(*args: str, **kw: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([os.path.join(VENV_BIN, "cais"), *args], capture_output=True, timeout=60,
                                  env={**env, **kw})
        ran = cais("run", "--rm", "--network", "none", "cais-cl-busybox", "sh", "-c", "echo hi; exit 3")
        assert (ran.returncode, ran.stdout, ran.stderr) == (3, b"hi\n", b"")
        version = cais("version").stdout
        assert b" API version:       1.41 (downgraded from 1.50)\n" in version and b"API version:      1.41" in version
        box = cais("run", "-d", "--network", "none", "--name", "cais-cl-negotiated", "cais-cl-busybox", "sleep", "60")
        assert box.returncode == 0, box.stderr
        ran = cais("exec", "cais-cl-negotiated", "sh", "-c", "echo in; exit 4")
        assert (ran.returncode, ran.stdout) == (4, b"in\n")
        pinned = cais("ps", DOCKER_API_VERSION="1.50")
        assert pinned.returncode == 1 and b"client version 1.50 is too new" in pinned.stderr
        assert cais("ps", "-q", DOCKER_API_VERSION="1.41").stdout.decode().strip() == box.stdout.decode()[:12]
