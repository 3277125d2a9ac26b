"""What keeps the command's start cheap, checked for behaviour: the argparse-free parse of the
usual command lines, the JSON of config.json / state.json through json's C half, and the
imports of the create/run path (no re, enum, argparse, json, ctypes in the command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cais import fastjson
from cais.runtime.cli import _fast_parse, _parser
from cais.runtime.errors import RuntimeFailure

LINES = [
    "--root /r run -b /b id", "--root=/r --log /l --log-format json create --bundle /b --pid-file /p id",
    "--systemd-cgroup run --preserve-fds 3 -d --console-socket /s id", "create id --no-pivot --no-new-keyring",
    "start id", "delete --force id", "delete id -f", "state x", "kill id", "kill id 9", "kill id KILL -a",
    "kill -a id TERM", "kill id -a KILL", "list", "list -f json -q", "list --format=json", "ps id", "ps id -ef",
    "ps -f json id", "exec id sh -c x", "exec -t --env A=1 -e B=2 id sh", "exec id --tty sh", "exec id",
    "exec -g 1 -g 2 --cap CAP_KILL id ls", "events --stats id", "update --memory 1g --pids-limit 5 id",
    "features", "spec", "spec --rootless -b x", "--rootless true spec", "pause id", "resume id", "run --bundle= id",
    # lines left to argparse: errors, help, abbreviations, `--`, values that look like options
    "--log-format yaml run id", "run", "run a b", "--version", "run --preserve-fds x id", "run --preserve-fds -1 id",
    "run --bund x id", "delete id --root /x", "run --no-pivot=1 id", "bogus id", "run -- id", "kill id -9",
    "exec -t id -- sh", "-h", "run -h",
]


def _argparse(argv: list[str]) -> dict | str:
    try:
        return vars(_parser().parse_args(argv))
    except RuntimeFailure as e:
        return f"error: {e}"
    except SystemExit:
        return "exit"


@pytest.mark.parametrize("line", LINES)
def test_fast_parse_agrees_with_argparse(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = line.split()
    fast = _fast_parse(argv)
    expected = _argparse(argv)
    capsys.readouterr()
    if fast is not None:  # what it takes, it takes exactly as argparse; errors are always argparse's
        assert vars(fast) == expected


def test_fast_parse_takes_what_engines_write() -> None:
    for line in ("--root /run/containerd/runc/k8s.io --log /l/log.json --log-format json create --bundle /b "
                 "--pid-file /b/init.pid id", "--root /r --log /l --log-format json --systemd-cgroup start id",
                 "--root /r run -b /b --pid-file /p -d id", "--root /r delete --force id",
                 "--root /r kill id 15", "--root /r state id"):
        assert _fast_parse(line.split()) is not None, line


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, -3e2, true, false, null, "\\u00e9\\n"], "b": {}}', " 7 ",
                                  '"x"', "[Infinity, -Infinity]"])
def test_fastjson_loads_as_json(text: str) -> None:
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.loads(text.encode()) == json.loads(text.encode())


def test_fastjson_dumps_as_json() -> None:
    value = {"id": "c", "pid": 12, "n": None, "f": 1.5, "é": ["ü", True], "nested": {"k": [1, {}]}}
    assert fastjson.dumps(value) == json.dumps(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        fastjson.dumps({"x": object()})


def test_fastjson_errors_are_json_errors_in_a_fresh_interpreter() -> None:
    """_json raises its errors through json.decoder: without json imported, still json's message."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from cais import fastjson\n"
            "for bad in ('{not json', '[1,]', '{} x', '', b'\\xff', b'\\xef\\xbb\\xbf{}'):\n"
            "    try: print(repr(fastjson.loads(bad)))\n"
            "    except ValueError as e: print(type(e).__name__, e)\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, repo], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["JSONDecodeError Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
                   "JSONDecodeError Expecting value: line 1 column 4 (char 3)",
                   "JSONDecodeError Extra data: line 1 column 4 (char 3)",
                   "JSONDecodeError Expecting value: line 1 column 1 (char 0)",
                   "UnicodeDecodeError 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
                   "{}"]


def test_create_path_imports_nothing_heavy() -> None:
    """The modules of the commands engines call most (create, start, run, exec, state, kill,
    delete), from their parse to their cgroups: none of the heavy ones."""
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from cais.runtime.cli import _fast_parse\n"
            "_fast_parse(['--root', '/r', '--log-format', 'json', 'run', '-b', '/b', 'id'])\n"
            "from cais.runtime.verbs import delete, exec, kill, run, start, state\n"
            "from cais.runtime.cgroups import v1, v2\n"
            "from cais import fastjson\n"
            "from cais.runtime import launch, log\n"
            "heavy = {'re', 'enum', 'argparse', 'json', 'ctypes', 'collections', 'functools', 'contextlib',\n"
            "         'typing', 'dataclasses', 'signal', 'shutil', 'subprocess', 'threading', 'locale'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, repo], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_imports_nothing_heavy() -> None:
    """The container init's interpreter (bootstrap.py, init.py): ctypes and little else."""
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from cais.runtime import bootstrap, init, namespaces\n"
            "from cais.linux import fds, namespaces as ns\n"
            "from cais.runtime.channel import Channel\n"
            "heavy = {'re', 'enum', 'argparse', 'json', 'collections', 'functools', 'contextlib', 'typing',\n"
            "         'dataclasses', 'signal', 'shutil', 'subprocess', 'threading', 'locale', 'array'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, repo], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_clone3_into_a_cgroup_v2_directory() -> None:
    """The child is born in the cgroup (no migration), with CLONE_PARENT as the bootstrap clones
    (the test's child, then); a descriptor that is not a v2 cgroup fails."""
    with open("/proc/self/mountinfo") as f:
        hierarchy = next((line.split()[4] for line in f if " - cgroup2 " in line), None)
    if hierarchy is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    path = os.path.join(hierarchy, f"cais-rt-clone3-{os.getpid()}")
    os.mkdir(path)
    code = ("import os, sys; sys.path.insert(0, sys.argv[1])\n"
            "from cais.linux.namespaces import CLONE_PARENT, clone3\n"
            "fd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)\n"
            "pid = clone3(CLONE_PARENT, fd)\n"
            "if pid == 0:\n"
            "    v2 = [line for line in open('/proc/self/cgroup').read().split() if line.startswith('0::')]\n"
            "    print(*v2, flush=True); os._exit(0)\n"
            "print(pid, flush=True)\n"
            "try: clone3(0, 0)\n"
            "except OSError as e: print('refused', e.errno, flush=True)\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", code, repo, path], capture_output=True, text=True,
                              check=True)
        lines = done.stdout.split()
        pid = int(next(word for word in lines if word.isdigit()))
        assert os.waitpid(pid, 0)[1] == 0  # CLONE_PARENT: the caller's parent (us) reaps it
        assert "0::/" + os.path.basename(path) in lines  # born in the cgroup
        assert "refused" in lines  # stdin is no cgroup directory
    finally:
        os.rmdir(path)


@pytest.mark.parametrize("value", [{"ociVersion": "1.2.0", "id": "c", "status": "running", "pid": 7, "bundle": "/b",
                                    "annotations": {}, "x": [1, [], {"é": None, "f": 1.5}]}, [], {}, "s",
                                   {"keys": {1: [True]}}])
def test_fastjson_indents_as_json(value: object) -> None:
    assert fastjson.dumps(value, indent=2) == json.dumps(value, indent=2)
