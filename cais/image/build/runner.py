"""RUN: a command in a container on the step's root filesystem, through an OCI runtime.

The container gets an OCI bundle whose rootfs is the step's overlay mount, docker's default
mounts, capabilities and masked paths, the stage's user, working directory and environment,
and a network namespace according to `--network`: "none" (loopback only), "host", or
"default" (the host's network: cais builds have no bridge of their own). The runtime is
`cais.runtime`, in-process, or any runc-compatible binary, with a state root of the builder's
own so builds never see other containers. Mount points the runtime had to create in the image
(/proc, /etc/resolv.conf, ...) are removed afterwards so they do not end up in the layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cais.image.build.copier import scoped
from cais.runtime import defaults
from cais.runtime.defaults import seccomp
from cais.storage.idshift import IdShift

NETWORK_MODES = ("default", "none", "host")
# Mount points a runtime may create inside the image: removed after the step when it made them.
# Deepest first.
_STUBS = ["dev/pts", "dev/shm", "dev/mqueue", "dev", "proc", "sys", "etc/resolv.conf", "etc/hosts", "etc"]


class RunError(Exception):
    """The command failed or could not be started; the message says how."""


@dataclass
class RunSpec:
    args: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    network: str = "default"
    hostname: str = "buildkitsandbox"
    mounts: list[dict[str, Any]] = field(default_factory=list)  # extra OCI mounts (RUN --mount)
    id_shift: IdShift | None = None  # userns-remap: a user namespace with this mapping


def oci_config(rootfs: str, run: RunSpec) -> dict[str, Any]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if run.network == "none":
        namespaces.append({"type": "network"})
    if run.id_shift is not None:
        namespaces.append({"type": "user"})
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    if run.network != "none":
        for name in ("resolv.conf", "hosts"):
            if os.path.isfile(f"/etc/{name}"):
                mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": f"/etc/{name}",
                               "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
    mounts += run.mounts
    linux: dict[str, Any] = {"namespaces": namespaces, "maskedPaths": list(defaults.MASKED_PATHS),
                             "readonlyPaths": list(defaults.READONLY_PATHS), "seccomp": seccomp.default(defaults.CAPS)}
    if run.id_shift is not None:
        shift = run.id_shift
        linux["uidMappings"] = [{"containerID": 0, "hostID": shift.uid, "size": shift.uid_size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": shift.gid, "size": shift.gid_size}]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": run.uid, "gid": run.gid, "additionalGids": run.groups},
            "args": run.args,
            "env": run.env,
            "cwd": run.cwd,
            "capabilities": {k: list(defaults.CAPS) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": run.hostname,
        "mounts": mounts,
        "linux": linux,
    }


class Runner:
    """Runs build containers: in-process through `cais.runtime`, or with a runc-compatible
    binary when `runtime` names one (as `--runtime` does for docker and buildah)."""

    def __init__(self, state_root: str, runtime: str | None = None) -> None:
        self.state_root = state_root
        self.runtime = runtime

    def run(self, container_id: str, bundle: str, rootfs: str, spec: RunSpec,
            output: Callable[[bytes], None]) -> None:
        if spec.network not in NETWORK_MODES:
            raise RunError(f"unknown network mode {spec.network!r} (use one of: {', '.join(NETWORK_MODES)})")
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(oci_config(rootfs, spec), f)
        stubs = _stub_paths([m["destination"] for m in spec.mounts])
        existing = {stub for stub in stubs if os.path.lexists(scoped(rootfs, stub, follow=False))}
        try:
            if self.runtime:
                code = self._run_binary(container_id, bundle, output)
            else:
                code = self._run_in_process(container_id, bundle, output)
        finally:
            _remove_stubs(rootfs, stubs, existing)
        if code != 0:
            raise RunError(f"exit code: {code}")

    def cleanup(self, container_id: str) -> None:
        """Remove what is left of a build container (its build died): processes, cgroup, state."""
        if self.runtime:
            subprocess.run([self.runtime, "--root", self.state_root, "delete", "--force", container_id],
                           capture_output=True, check=False)
            return
        from cais import runtime
        with contextlib.suppress(runtime.RuntimeFailure):
            runtime.delete(container_id, root=self.state_root, force=True)

    def _run_in_process(self, container_id: str, bundle: str, output: Callable[[bytes], None]) -> int:
        from cais import runtime
        from cais.runtime import store

        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                runtime.create(container_id, bundle, root=self.state_root, stdio=(stdin, write_end, write_end),
                               warn=lambda message: output(f"warning: {message}\n".encode()))
            finally:
                os.close(write_end)
                os.close(stdin)
            try:
                pid = store.load(self.state_root, container_id).pid
                runtime.start(container_id, root=self.state_root)
                return _pump(read_end, output, lambda: _reap(pid))
            finally:
                with contextlib.suppress(runtime.RuntimeFailure):
                    runtime.delete(container_id, root=self.state_root, force=True)
        except runtime.RuntimeFailure as e:
            raise RunError(str(e)) from None
        finally:
            os.close(read_end)

    def _run_binary(self, container_id: str, bundle: str, output: Callable[[bytes], None]) -> int:
        assert self.runtime is not None
        cmd = [self.runtime, "--root", self.state_root, "run", "--bundle", bundle, container_id]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise RunError(f"cannot start the runtime {self.runtime!r}: {e.strerror}") from None
        assert proc.stdout is not None
        try:
            return _pump(proc.stdout.fileno(), output, proc.poll)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            self.cleanup(container_id)


def _reap(pid: int) -> int | None:
    """The exit code of our child `pid` if it has exited (shell-style for signals), else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _pump(fd: int, output: Callable[[bytes], None], exited: Callable[[], int | None]) -> int:
    """Forward what the container writes until its main process exits (not until every
    descendant closed the pipe: a daemon left behind must not hang the build)."""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        code = None
        while True:
            ready = sel.select(0.05)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    break
                output(data)
                continue
            if code is not None:
                break  # exited and nothing more to read
            code = exited()
        return code if code is not None else _wait_code(exited)


def _wait_code(exited: Callable[[], int | None]) -> int:
    while (code := exited()) is None:
        time.sleep(0.01)
    return code


def _stub_paths(destinations: list[str]) -> list[str]:
    """Every path a runtime may create for the mounts, deepest first."""
    paths = set(_STUBS)
    for dest in destinations:
        parts = [p for p in dest.split("/") if p and p != "."]
        paths.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(paths, key=lambda p: (-p.count("/"), p))


def _remove_stubs(rootfs: str, stubs: list[str], existing: set[str]) -> None:
    """Remove the mount points the runtime created (empty files or directories)."""
    for stub in stubs:
        if stub in existing:
            continue
        path = scoped(rootfs, stub, follow=False)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass
