"""`run` of a busybox bundle executing `true`: cais-runtime against runc and crun.

    .venv/bin/python bench/runtime_start.py [--runs N]

Each runtime gets the same bundle (the config of `cais-runtime spec`, process `true`, no
terminal) and its own temporary --root; the wall time of the whole `RUNTIME run ID` command is
measured, from exec of the command to its exit (create, start, wait, delete). Medians, and each
peer's ratio to cais-runtime, are printed; a runtime that refuses to run is reported, not timed.
The "floor" rows are one start of this interpreter doing nothing: a `run` pays two (the command,
and the container's init, a fresh interpreter by design: docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from cais.image.bootstrap import busybox_rootfs  # noqa: E402
from cais.runtime import spec  # noqa: E402

CAIS = os.path.join(os.path.dirname(sys.executable), "cais-runtime")
REPO = os.path.dirname(HERE)


def installed_like(top: str) -> str:
    """A venv where cais is found as `pip install .` would put it (a path entry, no editable finder).

    The project's .venv is an editable install, whose import hook alone costs ~20 ms per start.
    """
    import site

    venv = os.path.join(top, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    purelib = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import sysconfig;"
                              "print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    with open(os.path.join(purelib, "cais.pth"), "w") as f:
        f.write(f"{REPO}\n{site.getsitepackages()[0]}\n")  # cais, and its dependencies (pyseccomp)
    script = os.path.join(venv, "bin", "cais-runtime")
    with open(script, "w") as f:
        f.write(f"#!{venv}/bin/python\nfrom cais.runtime.cli import entry\nentry()\n")
    os.chmod(script, 0o755)
    return script


def bundle(top: str) -> str:
    path = os.path.join(top, "bundle")
    busybox_rootfs(os.path.join(path, "rootfs"))
    config = spec.default()
    config["process"].update(terminal=False, args=["true"])
    config["ociVersion"] = "1.0.2"  # crun 1.8 refuses newer versions; the fields used are all 1.0
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def measure(argv: list[str], root: str, path: str, runs: int) -> tuple[list[float], list[float]] | str:
    """(wall times, CPU times of the runtime and every process it forked) of `runs` runs."""
    wall, cpu = [], []
    for i in range(runs + 2):
        before = os.times()
        start = time.perf_counter()
        done = subprocess.run([*argv, "--root", root, "run", "-b", path, f"cais-bench-{i}"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = os.times()
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if i >= 2:  # two warm-up runs: page cache, cgroup hierarchy
            wall.append(elapsed)
            cpu.append(after.children_user + after.children_system - before.children_user
                       - before.children_system)
    return wall, cpu


def measure_floor(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """An interpreter start alone: what every `cais-runtime run` pays twice (the command, the init)."""
    wall, cpu = [], []
    for i in range(runs + 2):
        before = os.times()
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        elapsed = time.perf_counter() - start
        after = os.times()
        if i >= 2:
            wall.append(elapsed)
            cpu.append(after.children_user + after.children_system - before.children_user - before.children_system)
    return wall, cpu


def measure_in_process(root: str, path: str, runs: int, zygote: object = None) -> tuple[list[float], list[float]]:
    """The engine's path: cais.runtime.run() called in a warm interpreter (no command to start)."""
    from cais.runtime.verbs.run import run

    wall, cpu = [], []
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for i in range(runs + 2):
            before = os.times()
            start = time.perf_counter()
            stdio = (devnull, devnull, devnull)
            boot = {"bootstrap": zygote.bootstrap(stdio)} if zygote else {}  # type: ignore[attr-defined]
            run(f"cais-bench-ip-{i}", path, root=root, stdio=stdio, **boot)
            elapsed = time.perf_counter() - start
            after = os.times()
            if i >= 2:
                wall.append(elapsed)
                cpu.append(after.user + after.system + after.children_user + after.children_system
                           - before.user - before.system - before.children_user - before.children_system)
    finally:
        os.close(devnull)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="cais-bench-rt-")
    try:
        path = bundle(top)
        runtimes = {"cais-runtime": [CAIS], "cais (installed)": [installed_like(top)]}  # runc, crun below
        for name in ("runc", "crun"):
            if shutil.which(name):
                runtimes[name] = [name]
        results: dict[str, tuple[list[float], list[float]] | str] = {}
        for name, argv in runtimes.items():
            results[name] = measure(argv, os.path.join(top, f"root-{name}"), path, args.runs)
        results["cais in-process"] = measure_in_process(os.path.join(top, "root-in-process"), path, args.runs)
        from cais.runtime.launch import Zygote

        zygote = Zygote()
        try:
            results["cais in-proc+zygote"] = measure_in_process(os.path.join(top, "root-zygote"), path, args.runs,
                                                                zygote)
        finally:
            zygote.close()
        results["floor: python -I -S"] = measure_floor([sys.executable, "-I", "-S", "-c", "pass"], args.runs)
        results["floor: python (site)"] = measure_floor([sys.executable, "-c", "pass"], args.runs)
        cais = results["cais-runtime"]
        base = statistics.median(cais[0]) if not isinstance(cais, str) else None
        print(f"{'runtime':<21} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'CPU ms':>8} {'runtime/cais':>13}")
        for name, r in results.items():
            if isinstance(r, str):
                print(f"{name:<21} refused: {r}")
                continue
            wall, cpu = r
            qs = statistics.quantiles(wall, n=10)
            ratio = f"{statistics.median(wall) / base:.2f}" if base else "-"
            print(f"{name:<21} {statistics.median(wall) * 1000:>10.1f} {qs[0] * 1000:>8.1f} {qs[-1] * 1000:>8.1f} "
                  f"{statistics.median(cpu) * 1000:>8.1f} {ratio:>13}")
        print(f"({args.runs} runs each; load average {os.getloadavg()[0]:.2f})")
    finally:
        subprocess.run(["umount", "-R", "-l", top], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
