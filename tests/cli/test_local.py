"""The CLI without a daemon: plain requests go straight to the in-process engine, the others to
the API served in-process; both give what caisd gives (output, exit codes, errors)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.caisd import VENV_BIN, _remove_cgroups, _stop_supervisor
from tests.caisd import Caisd as Roots
from tests.peers import _unmount_under

CAIS = os.path.join(VENV_BIN, "cais")


@pytest.fixture(scope="module")
def env() -> Iterator[dict]:
    if os.path.exists("/run/cais/cais.sock"):
        pytest.skip("a system caisd runs: the CLI would talk to it")
    root = tempfile.mkdtemp(prefix="cais-en-cli-", dir="/tmp")
    parent = f"/cais-en-{secrets.token_hex(4)}"
    env = {**os.environ, "CAIS_DATA_ROOT": os.path.join(root, "data"), "CAIS_EXEC_ROOT": os.path.join(root, "exec"),
           "CAIS_CGROUP_PARENT": parent}
    env.pop("CAIS_HOST", None)
    env.pop("DOCKER_HOST", None)
    try:
        subprocess.run([CAIS, "image", "bootstrap", "busybox"], env=env, check=True, capture_output=True, timeout=120)
        yield env
    finally:
        subprocess.run([CAIS, "rm", "-f", *_all(env)], env=env, capture_output=True, timeout=60)
        _stop_supervisor(Roots(root=root, sock="", cgroup_parent=parent))
        _unmount_under(root)
        _remove_cgroups(parent)
        shutil.rmtree(root, ignore_errors=True)


def test_in_process_engine_without_daemon(env: dict) -> None:
    """No caisd: the command runs the engine in-process on its own roots (like podman)."""
    result = cais(env, "run", "--rm", "busybox", "echo", "in-process")
    assert result.stdout == b"in-process\n", result.stderr
    assert cais(env, "ps", "-aq").stdout == b""


def _all(env: dict) -> list[str]:
    return subprocess.run([CAIS, "ps", "-aq"], env=env, capture_output=True, timeout=60).stdout.decode().split()


def cais(env: dict, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CAIS, *args], env=env, capture_output=True, input=input, timeout=120)


def test_run_exit_code_streams_and_errors(env: dict) -> None:
    run = cais(env, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (run.returncode, run.stdout, run.stderr) == (7, b"out\n", b"err\n")
    assert _all(env) == []
    missing = cais(env, "run", "--rm", "--pull", "never", "cais-en-no/such:image", "true")
    assert missing.returncode == 125 and b"No such image" in missing.stderr and b"Traceback" not in missing.stderr
    bad = cais(env, "run", "--rm", "--log-driver", "local", "--log-opt", "max-file=1", "busybox", "true")
    assert bad.returncode == 125 and b"compression cannot be enabled when max file count is 1" in bad.stderr
    assert cais(env, "start", "cais-en-nothing").returncode != 0


def test_detached_logs_inspect_rm(env: dict) -> None:
    cid = cais(env, "run", "-d", "--log-driver", "local", "--log-opt", "tag={{.Name}}", "--name", "cais-en-tagged",
               "busybox", "sh", "-c", "echo one; echo two >&2").stdout.decode().strip()
    assert len(cid) == 64
    assert cais(env, "wait", cid).stdout == b"0\n"
    logs = cais(env, "logs", "--tail", "1", cid)  # served by the in-process API
    assert logs.returncode == 0 and logs.stderr == b"two\n" and logs.stdout == b""
    assert cais(env, "logs", "--details", cid).stdout == b"tag=cais-en-tagged one\n"
    assert cais(env, "inspect", "-f", "{{.State.Status}} {{.HostConfig.LogConfig.Type}}", cid).stdout == b"exited local\n"
    assert cais(env, "ps", "-aq", "--filter", "status=exited").stdout.split() == [cid[:12].encode()]
    assert cais(env, "ps", "-q").stdout == b""
    assert cais(env, "rm", cid).returncode == 0
    gone = cais(env, "inspect", cid)
    assert gone.returncode != 0 and b"No such" in gone.stderr


def test_stdin_and_tty_attach_through_the_api(env: dict) -> None:
    piped = cais(env, "run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input=b"fed\n")
    assert (piped.returncode, piped.stdout) == (0, b"fed\ndone\n")
    running = cais(env, "run", "-d", "busybox", "sleep", "30").stdout.decode().strip()
    again = cais(env, "start", running)  # 304 from the engine: not an error, as with caisd
    assert (again.returncode, again.stdout) == (0, f"{running}\n".encode())
    assert cais(env, "rm", "-f", running).returncode == 0
    created = cais(env, "create", "busybox", "echo", "started").stdout.decode().strip()
    started = cais(env, "start", "-a", created)
    assert started.stdout == b"started\n"
    assert cais(env, "rm", created).returncode == 0


def test_daemon_json_log_defaults(env: dict) -> None:
    """daemon.json's log-driver and log-opts hold without caisd too; a bad one is a one-line error."""
    import json
    config = os.path.join(os.path.dirname(env["CAIS_DATA_ROOT"]), "daemon.json")
    with open(config, "w") as f:
        json.dump({"log-driver": "local", "log-opts": {"max-size": "1m"}}, f)
    configured = {**env, "CAIS_CONFIG_FILE": config}
    cid = cais(configured, "create", "busybox", "true").stdout.decode().strip()
    shown = cais(configured, "inspect", "-f", "{{json .HostConfig.LogConfig}}", cid).stdout
    assert json.loads(shown) == {"Type": "local", "Config": {"max-size": "1m"}}
    assert cais(configured, "rm", cid).returncode == 0
    with open(config, "w") as f:
        json.dump({"log-driver": "syslog"}, f)
    bad = cais(configured, "ps")
    assert bad.returncode != 0 and b"not supported" in bad.stderr and b"Traceback" not in bad.stderr


def test_daemon_json_namespace_defaults(env: dict) -> None:
    """default-ipc-mode and default-cgroupns-mode hold without caisd too (the same check as caisd's:
    cais.engine.daemonjson); a container that names its modes keeps them; a bad value is one line."""
    import json
    config = os.path.join(os.path.dirname(env["CAIS_DATA_ROOT"]), "daemon-ns.json")
    with open(config, "w") as f:
        json.dump({"default-ipc-mode": "shareable", "default-cgroupns-mode": "private"}, f)
    configured = {**env, "CAIS_CONFIG_FILE": config}
    donor = cais(configured, "run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    named = cais(configured, "create", "--ipc", "private", "--cgroupns", "host", "busybox", "true").stdout.decode().strip()
    try:
        modes = cais(configured, "inspect", "-f", "{{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}}", donor, named)
        assert modes.stdout.decode().split("\n")[:2] == ["shareable private", "private host"]
        # shareable: another container joins its IPC namespace, as with caisd
        assert cais(configured, "run", "--rm", "--ipc", f"container:{donor}", "busybox", "touch",
                    "/dev/shm/cais-eg").returncode == 0
        assert cais(configured, "exec", donor, "ls", "/dev/shm").stdout == b"cais-eg\n"
        inside, outside = (cais(configured, "exec", donor, "readlink", "/proc/1/ns/cgroup").stdout.strip(),
                           os.readlink("/proc/self/ns/cgroup").encode())
        assert inside != outside  # private cgroup namespace
    finally:
        cais(configured, "rm", "-f", donor, named)
    for key, value, message in (("default-ipc-mode", "host", b'IPC mode "host" is not supported as default value'),
                                ("default-cgroupns-mode", "bogus", b'default cgroup namespace mode "bogus" is invalid')):
        with open(config, "w") as f:
            json.dump({key: value}, f)
        bad = cais(configured, "ps")
        assert bad.returncode != 0 and message in bad.stderr and b"Traceback" not in bad.stderr
        assert len(bad.stderr.decode().strip().splitlines()) == 1


def test_daemonless_start_reads_daemon_json_without_the_daemons_parser(env: dict) -> None:
    """daemon.json is read through cais.engine.daemonjson: no argparse, no cais.daemon imported;
    a malformed file is still a one-line error."""
    config = os.path.join(os.path.dirname(env["CAIS_DATA_ROOT"]), "daemon-imports.json")
    with open(config, "w") as f:
        f.write('{"userns-remap": "", "log-opts": {"max-size": "1m"}}')
    configured = {**env, "CAIS_CONFIG_FILE": config}
    listed = subprocess.run([os.path.join(VENV_BIN, "python"), "-X", "importtime", CAIS, "ps"], env=configured,
                            capture_output=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in listed.stderr.decode().splitlines()}
    assert "cais.engine.daemonjson" in imported
    assert not {"argparse", "cais.daemon", "cais.daemon.config"} & imported
    with open(config, "w") as f:
        f.write("{not json")
    bad = cais(configured, "ps")
    assert bad.returncode != 0 and b"cannot read" in bad.stderr and b"Traceback" not in bad.stderr
    assert len(bad.stderr.decode().strip().splitlines()) == 1
