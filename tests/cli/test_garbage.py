"""Wrong flags and malformed configs for the three programs: a clear error on stderr, docker's (or
runc's) exit status, never a Python traceback, and nothing left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import pytest

from tests.api.garbage import PYTHON_TEXT
from tests.caisd import VENV_BIN, Caisd

# `cais` next to the real docker client on the same caisd: same exit status, no Python on stderr
SAME_AS_DOCKER = [
    ["run", "--rm", "--memory", "abc", "busybox", "true"],
    ["run", "--rm", "-p", "garbage", "busybox", "true"],
    ["run", "--rm", "--mount", "type=nope,target=/x", "busybox", "true"],
    ["run", "--rm", "--mount", "garbage", "busybox", "true"],
    ["run", "--rm", "--restart", "on-failure:abc", "busybox", "true"],
    ["run", "--rm", "--log-opt", "x", "busybox", "true"],
    ["run", "--rm", "--ulimit", "bogus=1", "busybox", "true"],
    ["run", "--rm", "--user", "nope", "busybox", "true"],
    ["run", "--rm", "--sysctl", "x", "busybox", "true"],
    ["run", "--rm", "--sysctl", "kernel.domainname=x", "busybox", "true"],
    ["run", "--rm", "--name", "..", "busybox", "true"],
    ["run", "--rm", "busybox:tag:x", "true"],
    ["run", "--rm", "--health-interval", "-1s", "busybox", "true"],
    ["ps", "--format", "{{.Nope"],
    ["images", "--format", "{{.Nope"],
    ["ps", "--filter", "bogus=1"],
    ["ps", "--filter", "x"],
    ["images", "--filter", "x"],
    ["logs", "--tail", "abc", "cais-bi-nope"],
    ["stop", "-t", "abc", "cais-bi-nope"],
    ["network", "create", "--subnet", "abc", "cais-bi-n"],
    ["volume", "create", "--opt", "x", "cais-bi-v"],
    ["update", "--memory", "abc", "cais-bi-nope"],
    ["nope"],
    ["run", "--nope", "busybox"],
]


def _clean(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text and not PYTHON_TEXT.search(text), text
    return text


@pytest.mark.parametrize("args", SAME_AS_DOCKER, ids=" ".join)
def test_cais_answers_wrong_flags_as_docker(daemon: Caisd, args: list[str]) -> None:
    ours = daemon.cais(*args, check=False)
    theirs = daemon.docker(*args, check=False)
    assert _clean(ours.stderr).strip(), "no error message"
    assert ours.returncode == theirs.returncode, (ours.stderr, theirs.stderr)
    assert not daemon.docker("ps", "-aq", "--filter", "ancestor=busybox").stdout.strip()


def _runtime(root: str, bundle: str, config: object) -> subprocess.CompletedProcess[bytes]:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write(config if isinstance(config, str) else json.dumps(config))
    return subprocess.run([os.path.join(VENV_BIN, "cais-runtime"), "--root", root, "create", "--bundle", bundle,
                           "cais-bi-rt"], capture_output=True, timeout=30)


BASE = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}]}}
GARBAGE = [0, "x", [1], {"a": [None]}, -1]


def _configs() -> list[object]:
    configs: list[object] = ["{bad", "[1]", '"x"', "[" * 100000]
    for value in GARBAGE:
        configs += [{**BASE, key: value} for key in ("process", "root", "mounts", "linux", "hooks", "hostname")]
        for key in ("args", "cwd", "env", "user", "capabilities", "rlimits", "oomScoreAdj", "terminal"):
            configs.append({**BASE, "process": {**BASE["process"], key: value}})
        configs.append({**BASE, "process": {**BASE["process"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": value,
                                                                           "soft": 1}]}})
        for key in ("namespaces", "resources", "devices", "seccomp", "sysctl", "maskedPaths", "readonlyPaths",
                    "cgroupsPath", "uidMappings"):
            configs.append({**BASE, "linux": {**BASE["linux"], key: value}})
        configs.append({**BASE, "mounts": [{"destination": "/x", "type": "bind", "source": value, "options": value}]})
        configs.append({**BASE, "linux": {**BASE["linux"], "resources": {"memory": {"limit": value}}}})
    return configs


def test_runtime_refuses_config_json_of_wrong_types() -> None:
    """runc's behaviour: `create` fails with status 1 and one line; no state, mount or cgroup is left."""
    with tempfile.TemporaryDirectory(prefix="cais-bi-rt-") as tmp:
        root, bundle = os.path.join(tmp, "state"), os.path.join(tmp, "bundle")
        os.makedirs(os.path.join(bundle, "rootfs"))
        problems = []
        for config in _configs():
            done = _runtime(root, bundle, config)
            text = done.stderr.decode(errors="replace")
            if done.returncode != 1 or "Traceback" in text or PYTHON_TEXT.search(text) or len(text.splitlines()) != 1:
                problems.append(f"{json.dumps(config)[:200]}: [{done.returncode}] {text[-300:]!r}")
        assert not problems, "\n".join(problems)
        assert not os.path.exists(root) or not os.listdir(root), os.listdir(root)
        with open("/proc/self/mountinfo") as f:
            assert tmp not in f.read()


def _caisd(tmp: str, *flags: str, config: str | None = None) -> subprocess.CompletedProcess[bytes]:
    path = os.path.join(tmp, "daemon.json")
    if config is not None:
        with open(path, "w") as f:
            f.write(config)
    return subprocess.run([os.path.join(VENV_BIN, "caisd"), "--data-root", os.path.join(tmp, "data"),
                           "--exec-root", os.path.join(tmp, "exec"), "-H", f"unix://{tmp}/d.sock", "--bridge", "none",
                           "--config-file", path, *flags], capture_output=True, timeout=30)


@pytest.mark.parametrize("flags,config", [
    (["--nope"], "{}"), (["--mtu", "abc"], "{}"), (["--log-level", "bogus"], "{}"), ([], "{bad"), ([], "[1]"),
    ([], '{"debug": "yes"}'), ([], '{"mtu": "x"}'), ([], '{"dns": "1.1.1.1"}'), ([], '{"cgroup-parent": [1]}'),
    ([], '{"hosts": 5}'), ([], '{"bip": 5}'), ([], '{"userns-remap": 5}'), ([], '{"nope": 1}'),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_caisd_refuses_bad_flags_and_daemon_json(flags: list[str], config: str) -> None:
    """dockerd's behaviour: exit status 1 and a one-line reason, before anything is created."""
    with tempfile.TemporaryDirectory(prefix="cais-bi-d-") as tmp:
        done = _caisd(tmp, *flags, config=config)
        text = _clean(done.stderr)
        assert done.returncode == 1, text
        lines = [line for line in text.splitlines() if not re.match(r"See 'caisd --help'", line)]
        assert len(lines) == 1 and lines[0].startswith("caisd: "), text
        assert not os.path.exists(os.path.join(tmp, "exec", "caisd.pid"))
