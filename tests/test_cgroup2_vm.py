"""Runs the cgroup2-marked tests in the qemu guest of `scripts/vm-test` (a real cgroup v2 host).

This machine keeps its cgroup controllers on v1, so the suite's cgroup v2 coverage comes from here:
the guest's pytest output is printed (shown by pytest when this fails, or with -s).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VM_TEST = os.path.join(ROOT, "scripts", "vm-test")
EXIT_UNAVAILABLE = 77
# Boot (about 10 s under TCG) plus the cgroup2 tests; the guest is killed after this.
TIME_LIMIT = 480

pytestmark = pytest.mark.skipif(os.environ.get("CAIS_VM_GUEST") == "1", reason="already inside the guest")


def _vm_test(*args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([VM_TEST, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


@pytest.mark.timeout(TIME_LIMIT + 120)
def test_cgroup2_suite_passes_in_the_guest():
    prepared = _vm_test("--prepare", timeout=300)
    if prepared.returncode == EXIT_UNAVAILABLE:
        pytest.skip(prepared.stdout.strip().splitlines()[-1])
    assert prepared.returncode == 0, prepared.stdout
    result = _vm_test("--time-limit", str(TIME_LIMIT), "-v", "-m", "cgroup2", "tests", timeout=TIME_LIMIT + 60)
    assert result.returncode == 0, f"scripts/vm-test exited {result.returncode}; output above"
