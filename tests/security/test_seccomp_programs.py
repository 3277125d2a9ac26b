"""A container's seccomp program is compiled before its init is cloned and loaded as bytes
(cais/runtime/seccomp.py, cais/linux/seccomp.py): it is exactly what libseccomp itself installs,
it denies what the profile denies, and a warm zygote compiles a profile once and serves it again
only for that same profile."""

from __future__ import annotations

import copy
import ctypes
import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from cais import runtime
from cais.runtime import seccomp, spec
from cais.runtime.defaults import seccomp as profiles
from cais.runtime.launch import Zygote
from tests.runtime.bundle import Runtime, read
from tests.security.test_defaults import DENIED

DOCKER = profiles.resolve(profiles.default_profile(), spec.DEFAULT_CAPS)


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def _create(rt: Runtime, zygote: Zygote, section: dict, args: list[str], probe: str | None = None,
            warnings: list[str] | None = None) -> tuple[str, int, str]:
    """A container from ZYGOTE under SECTION, created (not started): its id, pid and output file."""
    b = rt.bundle(*args)
    if probe:
        shutil.copy(probe, os.path.join(b.rootfs, "probe"))
    b.config["linux"]["seccomp"] = section
    b.write()
    cid = rt.new_id()
    out = os.path.join(rt.top, f"{cid}.out")
    with open(os.devnull) as null, open(out, "w") as f:
        stdio = (null.fileno(), f.fileno(), f.fileno())
        runtime.create(cid, b.path, root=rt.root, bootstrap=zygote.bootstrap(stdio),
                       warn=(warnings if warnings is not None else []).append)
    return cid, runtime.state(cid, root=rt.root)["pid"], out


def _probe(rt: Runtime, zygote: Zygote, section: dict, probe: str, calls: list[str]) -> dict[str, str]:
    cid, pid, out = _create(rt, zygote, section, ["/probe", *calls], probe)
    runtime.start(cid, root=rt.root)
    _, status = os.waitpid(pid, 0)
    runtime.delete(cid, root=rt.root)
    assert os.waitstatus_to_exitcode(status) == 0, read(out)
    return dict(line.split() for line in read(out).splitlines())


_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_SECCOMP_GET_FILTER = 0x4206, 0x4207, 0x420C


def _installed_filter(pid: int) -> bytes:
    """The (only) seccomp program of our child PID, read with PTRACE_SECCOMP_GET_FILTER; it stays stopped."""
    assert _libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0, os.strerror(ctypes.get_errno())
    assert _libc.ptrace(PTRACE_INTERRUPT, pid, None, None) == 0, os.strerror(ctypes.get_errno())
    os.waitpid(pid, os.WUNTRACED)
    count = _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, None)
    assert count > 0, os.strerror(ctypes.get_errno())
    buf = ctypes.create_string_buffer(count * 8)
    assert _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, buf) == count
    assert _libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 1, None) == -1  # nothing stacked on it
    return buf.raw


def _loaded_by_libseccomp(section: dict) -> bytes:
    """What seccomp_load() itself installs for SECTION, in a forked child."""
    pid = os.fork()
    if pid == 0:
        try:
            seccomp.build_filter(section, lambda _: None).load()
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    try:
        os.waitpid(pid, os.WUNTRACED)
        return _installed_filter(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_the_container_gets_exactly_libseccomps_program(rt: Runtime, zygote: Zygote) -> None:
    cid, pid, _ = _create(rt, zygote, DOCKER, ["sleep", "100000"])
    try:
        runtime.start(cid, root=rt.root)
        installed = _installed_filter(pid)
    finally:
        runtime.kill(cid, 9, root=rt.root)
        os.waitpid(pid, 0)
        runtime.delete(cid, root=rt.root)
    assert installed == _loaded_by_libseccomp(DOCKER)
    assert len(installed) > 8 * 500  # docker's profile, not a stub


def test_the_zygote_compiles_a_profile_once_and_never_serves_a_changed_one(
        rt: Runtime, zygote: Zygote, probe: str) -> None:
    calls = [*DENIED, "getpid"]
    for _ in range(2):
        result = _probe(rt, zygote, DOCKER, probe, calls)
        assert {call: result[call] for call in DENIED} == dict.fromkeys(DENIED, "EPERM")
        assert result["getpid"] == "OK"
    assert zygote.stats() == {"seccomp_compiled": 1, "seccomp_reused": 1}

    keyrings = copy.deepcopy(DOCKER)
    keyrings["syscalls"].append({"names": ["keyctl"], "action": "SCMP_ACT_ALLOW"})
    result = _probe(rt, zygote, keyrings, probe, ["keyctl", "add_key", "mount"])
    assert result == {"keyctl": "OK", "add_key": "EPERM", "mount": "EPERM"}
    assert zygote.stats() == {"seccomp_compiled": 2, "seccomp_reused": 1}

    # An exec in the first kind of container: the zygote's helper gets the kept program too.
    cid, pid, _ = _create(rt, zygote, DOCKER, ["sleep", "100000"], probe)
    try:
        runtime.start(cid, root=rt.root)
        out = os.path.join(rt.top, "exec.out")
        with open(os.devnull) as null, open(out, "w") as f:
            stdio = (null.fileno(), f.fileno(), f.fileno())
            exec_pid = runtime.exec_process(cid, {"args": ["/probe", "keyctl", "getpid"], "cwd": "/"}, root=rt.root,
                                            stdio=stdio, bootstrap=zygote.bootstrap(stdio))
        _, status = os.waitpid(exec_pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, read(out)
        assert read(out).split() == ["keyctl", "EPERM", "getpid", "OK"]
    finally:
        runtime.kill(cid, 9, root=rt.root)
        os.waitpid(pid, 0)
        runtime.delete(cid, root=rt.root)
    assert zygote.stats() == {"seccomp_compiled": 2, "seccomp_reused": 3}


def test_profile_errors_and_warnings_through_the_zygote(rt: Runtime, zygote: Zygote) -> None:
    bogus = {"defaultAction": "SCMP_ACT_BOGUS"}
    for _ in range(2):  # an error is not kept: each request says it again
        with pytest.raises(runtime.RuntimeFailure, match=r"^seccomp: unsupported action 'SCMP_ACT_BOGUS'$"):
            _create(rt, zygote, bogus, ["true"])
    with pytest.raises(runtime.RuntimeFailure, match=r"^seccomp: unsupported flag 'SECCOMP_FILTER_FLAG_BOGUS'$"):
        _create(rt, zygote, dict(DOCKER, flags=["SECCOMP_FILTER_FLAG_BOGUS"]), ["true"])
    assert runtime.list_containers(rt.root) == []

    foreign = dict(DOCKER, architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_S390X"],
                   flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    for _ in range(2):  # a kept program repeats its warnings
        warnings: list[str] = []
        cid, pid, _ = _create(rt, zygote, foreign, ["true"], warnings=warnings)
        runtime.start(cid, root=rt.root)
        _, status = os.waitpid(pid, 0)
        runtime.delete(cid, root=rt.root)
        assert os.waitstatus_to_exitcode(status) == 0
        assert warnings == ["seccomp: architecture SCMP_ARCH_S390X unsupported here; ignored"]
    assert zygote.stats() == {"seccomp_compiled": 1, "seccomp_reused": 1}


def test_the_command_line_compiles_and_loads_the_same_way(rt: Runtime, probe: str) -> None:
    """cais-runtime has no zygote: its bootstrap compiles, the init loads the bytes."""
    b = rt.bundle("/probe", "keyctl", "mount", "getpid")
    shutil.copy(probe, os.path.join(b.rootfs, "probe"))
    b.config["linux"]["seccomp"] = dict(DOCKER, architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_S390X"])
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["keyctl", "EPERM", "mount", "EPERM", "getpid", "OK"]
    assert done.stderr == "cais-runtime: warning: seccomp: architecture SCMP_ARCH_S390X unsupported here; ignored\n"
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}
    done = rt.run(b)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "cais-runtime: seccomp: unsupported flag 'SECCOMP_FILTER_FLAG_BOGUS'"], done.stderr
