"""Benchmark: what docker's default seccomp filter costs a container: to set up, and per syscall.

Setup (in this process, no daemon): compiling the profile with libseccomp, which a zygote does
once per profile (cais/runtime/seccomp.py), and installing the compiled bytes with seccomp(2),
which every init and exec'd process does; against libseccomp's seccomp_load() of the same filter,
which builds and generates it again in each process (what each init did before). Medians of
`--runs` forked children, CPU time.

Per syscall: a static helper (tests/security/probe.c) calls getppid() 2,000,000 times and prints the time per
call. It runs in a busybox container under caisd with the default profile and with
`--security-opt seccomp=unconfined`, and the same under dockerd 20.10 (runc, docker's profile).
getppid is near the end of neither allow-list's order, so this is the filter's typical cost.

    .venv/bin/python bench/seccomp.py [--runs N] [--setup-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import caisd  # noqa: E402
from tests.peers import dockerd  # noqa: E402

PROBE_C = os.path.join(os.path.dirname(__file__), "..", "tests", "security", "probe.c")


def ns_per_call(docker, probe: str, *opts: str) -> float:  # type: ignore[no-untyped-def]
    out = docker("run", "--rm", "-v", f"{probe}:/probe:ro", *opts, "busybox", "/probe", "loop").stdout.decode()
    return float(next(line for line in out.splitlines() if line.startswith("ns/call")).split()[1])


def _in_child(work) -> float:  # type: ignore[no-untyped-def]
    """CPU milliseconds of WORK in a forked child (a filter, once installed, stays with its process)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        start = time.process_time()
        work()
        os.write(w, str((time.process_time() - start) * 1000).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        return float(f.read())


def setup_costs(runs: int) -> None:
    from cais.linux import seccomp as kernel
    from cais.runtime import seccomp, spec
    from cais.runtime.defaults import seccomp as profiles

    section = profiles.resolve(profiles.default_profile(), spec.DEFAULT_CAPS)
    program, flags, _ = seccomp.compile_program(section)
    costs = {"compile (libseccomp; a zygote: once per profile)": [], "install the compiled bytes (per process)": [],
             "seccomp_load(): build, generate and install (per process, before)": []}
    for _ in range(runs):
        compile_ms = _in_child(lambda: seccomp.compile_program(section))
        install_ms = _in_child(lambda: kernel.set_mode_filter(program, flags))
        both_ms = _in_child(lambda: seccomp.build_filter(section, lambda _: None).load())
        for label, ms in zip(costs, (compile_ms, install_ms, both_ms), strict=True):
            costs[label].append(ms)
    print(f"docker's default profile ({len(program) // 8} BPF instructions), CPU ms, median of {runs} processes")
    print("| step | ms |")
    print("|---|---|")
    for label, values in costs.items():
        print(f"| {label} | {statistics.median(values):.2f} |")


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
    parser.add_argument("--setup-only", action="store_true", help="only the filter's setup, no daemons")
    args = parser.parse_args()
    setup_costs(max(args.runs, 9))
    if args.setup_only:
        return
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
