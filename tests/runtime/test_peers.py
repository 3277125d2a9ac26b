"""Real consumers drive cais-runtime in place of runc: dockerd, containerd (ctr) and Podman."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.peers import _unmount_under, dockerd, stop_daemon
from tests.runtime.bundle import CAIS_RUNTIME

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def busybox_tar(busybox_dir: str) -> Iterator[str]:
    top = tempfile.mkdtemp(prefix="cais-rt-tar-")
    tar = os.path.join(top, "busybox.tar")
    subprocess.run(["tar", "-C", busybox_dir, "-cf", tar, "."], check=True)
    try:
        yield tar
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_dockerd_runs_containers_with_cais_runtime(busybox_tar: str) -> None:
    with dockerd(runtimes={"cais": CAIS_RUNTIME}) as dk:
        dk.docker("import", busybox_tar, "cais-rt-busybox:latest")
        run = dk.docker(
            "run",
            "--rm",
            "--runtime",
            "cais",
            "--network",
            "none",
            "--hostname",
            "cais-rt-dk",
            "cais-rt-busybox",
            "sh",
            "-c",
            "echo pid=$$ $(hostname); grep Seccomp: /proc/self/status; exit 4",
            check=False,
        )
        assert run.returncode == 4, run.stderr
        assert b"pid=1 cais-rt-dk" in run.stdout and b"Seccomp:\t2" in run.stdout
        tty = dk.docker(
            "run", "--rm", "-t", "--runtime", "cais", "--network", "none", "cais-rt-busybox", "tty"
        )
        assert b"/dev/pts/0" in tty.stdout
        cid = (
            dk.docker(
                "run", "-d", "--runtime", "cais", "--network", "none", "cais-rt-busybox", "sleep", "300"
            )
            .stdout.decode()
            .strip()
        )
        ex = dk.docker("exec", cid, "sh", "-c", "echo in:$$; cat /proc/1/cmdline")
        assert b"in:" in ex.stdout and b"sleep" in ex.stdout
        ex_tty = dk.docker("exec", "-t", cid, "tty")
        assert b"/dev/pts/" in ex_tty.stdout
        inspect = dk.docker("inspect", "-f", "{{.HostConfig.Runtime}} {{.State.Status}}", cid).stdout
        assert inspect.split() == [b"cais", b"running"]
        dk.docker("pause", cid)
        assert dk.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == b"paused"
        dk.docker("unpause", cid)
        dk.docker("stop", "-t", "1", cid)
        assert dk.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == b"exited"
        dk.docker("rm", cid)


@contextmanager
def _containerd() -> Iterator[str]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed")
    top = tempfile.mkdtemp(prefix="cais-rt-ctrd-", dir="/tmp")
    sock = os.path.join(top, "c.sock")
    config = os.path.join(top, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'version = 2\nroot = "{top}/root"\nstate = "{top}/state"\n'
            f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "{sock}"\n'
            f'[ttrpc]\naddress = "{sock}.ttrpc"\n'
        )
    log = open(os.path.join(top, "containerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["containerd", "--config", config], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ctr", "-a", sock, "version"], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.2)
        yield sock
    finally:
        stop_daemon(proc, log, top, timeout=20)


def test_containerd_ctr_run_with_cais_runtime(busybox_dir: str) -> None:
    rootfs = tempfile.mkdtemp(prefix="cais-rt-ctr-rootfs-")
    try:
        subprocess.run(["cp", "-a", busybox_dir + "/.", rootfs], check=True)
        with _containerd() as sock:
            run = subprocess.run(
                [
                    "ctr",
                    "-a",
                    sock,
                    "run",
                    "--rm",
                    "--runc-binary",
                    CAIS_RUNTIME,
                    "--rootfs",
                    rootfs,
                    "cais-rt-ctr",
                    "sh",
                    "-c",
                    "echo pid=$$; grep CapEff /proc/self/status",
                ],
                capture_output=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            assert b"pid=1" in run.stdout and b"CapEff" in run.stdout
            ctr = ["ctr", "-a", sock]
            subprocess.run([*ctr, "run", "-d", "--runc-binary", CAIS_RUNTIME, "--rootfs", rootfs, "cais-rt-ctr-d",
                            "sleep", "300"], check=True, capture_output=True, timeout=120)
            try:
                ex = subprocess.run([*ctr, "task", "exec", "--exec-id", "cais-rt-x", "cais-rt-ctr-d", "sh", "-c",
                                     "echo exec:$$"], capture_output=True, timeout=120)
                assert ex.returncode == 0 and ex.stdout.startswith(b"exec:"), ex.stderr
                subprocess.run([*ctr, "task", "pause", "cais-rt-ctr-d"], check=True, capture_output=True)
                subprocess.run([*ctr, "task", "resume", "cais-rt-ctr-d"], check=True, capture_output=True)
            finally:
                subprocess.run([*ctr, "task", "kill", "-s", "SIGKILL", "cais-rt-ctr-d"], capture_output=True)
                subprocess.run([*ctr, "task", "rm", "-f", "cais-rt-ctr-d"], capture_output=True, timeout=60)
                subprocess.run([*ctr, "container", "rm", "cais-rt-ctr-d"], capture_output=True, timeout=60)
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)


def test_podman_runs_containers_with_cais_runtime(busybox_tar: str) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    top = tempfile.mkdtemp(prefix="cais-rt-podman-", dir="/tmp")
    base = [
        "podman",
        "--root",
        os.path.join(top, "root"),
        "--runroot",
        os.path.join(top, "run"),
        "--runtime",
        CAIS_RUNTIME,
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--storage-driver=vfs",
        "--tmpdir",
        os.path.join(top, "tmp"),
    ]
    try:
        subprocess.run(
            [*base, "import", busybox_tar, "cais-rt-busybox"], check=True, capture_output=True, timeout=120
        )
        run = subprocess.run(
            [
                *base,
                "run",
                "--rm",
                "--network=none",
                "--name",
                "cais-rt-pod",
                "cais-rt-busybox",
                "sh",
                "-c",
                "echo pid=$$; exit 6",
            ],
            capture_output=True,
            timeout=120,
        )
        assert run.returncode == 6, run.stderr
        assert b"pid=1" in run.stdout
        subprocess.run([*base, "run", "-d", "--network=none", "--name", "cais-rt-pod-d", "cais-rt-busybox",
                        "sleep", "300"], check=True, capture_output=True, timeout=120)
        ex = subprocess.run([*base, "exec", "cais-rt-pod-d", "sh", "-c", "echo exec:$$"], capture_output=True,
                            timeout=120)
        assert ex.returncode == 0 and ex.stdout.startswith(b"exec:"), ex.stderr
        tty = subprocess.run([*base, "exec", "-t", "cais-rt-pod-d", "tty"], capture_output=True, timeout=120)
        assert b"/dev/pts/" in tty.stdout, tty.stderr
        subprocess.run([*base, "stop", "-t", "1", "cais-rt-pod-d"], check=True, capture_output=True, timeout=120)
    finally:
        subprocess.run([*base, "rm", "-af"], capture_output=True, timeout=120)
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)
