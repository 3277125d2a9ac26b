"""Runs the cgroup2-marked tests in the qemu guest of `scripts/vm-test` (a real cgroup v2 host).

This machine keeps its cgroup controllers on v1, so the suite's cgroup v2 coverage comes from here:
the guest's pytest output is printed (shown by pytest when this fails, or with -s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VM_TEST = os.path.join(ROOT, "scripts", "vm-test")
EXIT_UNAVAILABLE = 77
# Boot (5-30 s under TCG) plus the cgroup2 tests; the guest is killed after this.
TIME_LIMIT = 600
# Python is 20-50 times slower in the guest than here: each test gets more than pyproject's 120 s.
GUEST_TEST_TIMEOUT = 300

pytestmark = pytest.mark.skipif(os.environ.get("CAIS_VM_GUEST") == "1", reason="already inside the guest")


def _vm_test(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, VM_TEST, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # interrupted: vm-test kills its guest when it dies
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines))


@pytest.fixture(scope="module")
def guest() -> None:
    """The cached guest, built if needed; skips where it cannot be (no qemu, no kernel package)."""
    prepared = _vm_test("--prepare", timeout=300)
    if prepared.returncode == EXIT_UNAVAILABLE:
        pytest.skip(prepared.stdout.strip().splitlines()[-1])
    assert prepared.returncode == 0, prepared.stdout


@pytest.mark.timeout(TIME_LIMIT + 120)
def test_cgroup2_suite_passes_in_the_guest(guest):
    result = _vm_test("--time-limit", str(TIME_LIMIT), "-v", "-o", f"timeout={GUEST_TEST_TIMEOUT}",
                      timeout=TIME_LIMIT + 60)  # runs pytest -m cgroup2 … tests
    assert result.returncode == 0, f"scripts/vm-test exited {result.returncode}; output above"


@pytest.mark.timeout(300)
def test_guest_is_isolated_and_reports_the_exit_status(guest):
    """The host's root is read-only to the guest (its writes land in a tmpfs), it has no network."""
    host_dir = tempfile.mkdtemp(prefix=".cais-vm-test-", dir=ROOT)  # the guest has its own /tmp, /var/tmp
    try:
        _check_isolation(os.path.join(host_dir, "written-by-guest"))
    finally:
        shutil.rmtree(host_dir)


def _check_isolation(probe: str) -> None:
    script = f"echo guest-wrote > {probe} && cat {probe} && ls /sys/class/net && exit 3"
    result = _vm_test("--time-limit", "240", "--command", "sh", "-c", script, timeout=300)
    assert result.returncode == 3, result.stdout
    lines = result.stdout.splitlines()
    assert "guest-wrote" in lines
    assert "lo" in lines and not any(n in lines for n in ("eth0", "ens3", "enp0s3"))
    assert not os.path.exists(probe)


def test_missing_qemu_is_reported_as_unavailable():
    env = dict(os.environ, PATH="/nonexistent")
    result = _vm_test("--prepare", timeout=60, env=env)
    assert result.returncode == EXIT_UNAVAILABLE
    assert result.stdout.strip() == "cais-vm: unavailable: qemu-system-x86_64 not found: install Debian's qemu-system-x86"


def test_time_limit_kills_the_guest(guest, tmp_root):
    env = dict(os.environ, TMPDIR=tmp_root)  # the run's job directory names its qemu
    result = _vm_test("--time-limit", "3", "--command", "sleep", "600", timeout=60, env=env)
    assert result.returncode == 124, result.stdout
    assert "time limit" in result.stdout
    assert not _processes_mentioning(tmp_root)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found
