"""Benchmark: the cost of the default seccomp filter on a syscall-heavy loop inside a container.

A static helper (tests/security/probe.c) calls getppid() 2,000,000 times and prints the time per
call. It runs in a busybox container under caisd with the default profile and with
`--security-opt seccomp=unconfined`, and the same under dockerd 20.10 (runc, docker's profile).
getppid is near the end of neither allow-list's order, so this is the filter's typical cost.

    .venv/bin/python bench/seccomp.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import caisd  # noqa: E402
from tests.peers import dockerd  # noqa: E402

PROBE_C = os.path.join(os.path.dirname(__file__), "..", "tests", "security", "probe.c")


def ns_per_call(docker, probe: str, *opts: str) -> float:  # type: ignore[no-untyped-def]
    out = docker("run", "--rm", "-v", f"{probe}:/probe:ro", *opts, "busybox", "/probe", "loop").stdout.decode()
    return float(next(line for line in out.splitlines() if line.startswith("ns/call")).split()[1])


def measure(docker, probe: str, runs: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The fastest of `runs` (the machine is shared: the minimum is the least disturbed), with
    and without the filter interleaved so that load changes hit both alike."""
    variants = {"default profile": (), "unconfined": ("--security-opt", "seccomp=unconfined")}
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(runs):
        for label, opts in variants.items():
            times[label].append(ns_per_call(docker, probe, *opts))
    return {label: min(t) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="cais-se-bench-", dir="/tmp")
    try:
        probe = os.path.join(tmp, "probe")
        subprocess.run(["gcc", "-static", "-O2", "-o", probe, PROBE_C], check=True)
        results = {}
        with caisd() as d:
            results["cais"] = measure(d.docker, probe, args.runs)
            image = d.docker("save", "busybox").stdout
            with dockerd() as peer:
                peer.docker("load", input=image)
                results["docker 20.10 (runc)"] = measure(peer.docker, probe, args.runs)
        print(f"getppid() in a container, ns per call, fastest of {args.runs} runs of 2,000,000 calls")
        print("| engine | default profile | unconfined | filter cost |")
        print("|---|---|---|---|")
        for engine, r in results.items():
            cost = r["default profile"] - r["unconfined"]
            print(f"| {engine} | {r['default profile']:.1f} | {r['unconfined']:.1f} | {cost:+.1f} ns |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
