"""caisd of another git revision against this tree's, interleaved: `run --rm`, `exec true`, concurrent starts.

    .venv/bin/python bench/engine_ab.py [--base REV] [--runs N] [--concurrent N]

Two private caisds (tests/caisd.py) run side by side, one from `git archive REV` (default: main),
one from this worktree; the docker CLI alternates between them run after run, so other load on
the machine falls on both alike. Printed per side: median wall time of `docker run --rm --network
none busybox true` and of `docker exec C true`, and the engine's CPU per operation — caisd, the
supervisor, the processes it reaped (inits, exec'd processes, bootstraps) and the init zygote —
then the wall time of N containers started by 8 concurrent docker clients. The load average is
printed at the end.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests import caisd as caisd_mod  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float]:
    """Seconds of CPU of `pid` itself, and of the children it reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def _parts(d: caisd_mod.Caisd) -> list[float]:
    """CPU seconds so far: caisd, the supervisor itself, what the supervisor reaped (inits, exec'd
    processes, bootstraps), its children still alive (the init zygote; idle containers)."""
    sup = d.supervisor_pid() or 0
    children: list[int] = []
    with contextlib.suppress(OSError), open(f"/proc/{sup}/task/{sup}/children") as f:
        children = [int(p) for p in f.read().split()]
    own, reaped = _cpu(sup)
    return [sum(_cpu(d.proc.pid)), own, reaped, sum(sum(_cpu(p)) for p in children)]  # type: ignore[union-attr]


@contextlib.contextmanager
def _starting_from(tree: str | None) -> Iterator[None]:
    """While a caisd starts: it imports cais from `tree` (None: this worktree)."""
    if tree is None:
        yield
        return
    original = caisd_mod.Caisd.args

    def args(self: caisd_mod.Caisd) -> list[str]:  # `python -m`, so that PYTHONPATH decides
        return [sys.executable, "-m", "cais.daemon.main", *original(self)[1:]]
    caisd_mod.Caisd.args = args  # type: ignore[method-assign]
    os.environ["PYTHONPATH"] = tree  # its supervisor and `cais image bootstrap` too
    try:
        yield
    finally:
        caisd_mod.Caisd.args = original  # type: ignore[method-assign]
        os.environ.pop("PYTHONPATH", None)


@contextlib.contextmanager
def _daemon(tree: str | None) -> Iterator[caisd_mod.Caisd]:
    stack = contextlib.ExitStack()
    with _starting_from(tree):
        d = stack.enter_context(caisd_mod.caisd())
    with stack:
        yield d


def _docker(d: caisd_mod.Caisd, *args: str) -> str:
    done = subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)}: {done.stderr.strip()}\n{d.read_log()[-2000:]}")
    return done.stdout.strip()


def _timed(d: caisd_mod.Caisd, argv: list[str]) -> tuple[float, list[float]]:
    before = _parts(d)
    start = time.perf_counter()
    subprocess.run(["docker", "-H", d.host, *argv], check=True, capture_output=True)
    wall = time.perf_counter() - start
    time.sleep(0.2)  # what the engine does after answering (e.g. deleting directories) counts too
    return wall, [a - b for a, b in zip(_parts(d), before, strict=True)]


def _concurrent(d: caisd_mod.Caisd, n: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: subprocess.run(
            ["docker", "-H", d.host, "run", "-d", "--network", "none", "busybox", "sleep", "600"],
            check=True, capture_output=True, text=True).stdout.strip(), range(n)))
    elapsed = time.perf_counter() - start
    subprocess.run(["docker", "-H", d.host, "rm", "-f", *ids], check=True, capture_output=True, timeout=300)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--concurrent", type=int, default=10, help="0: no concurrent starts")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed cais has its bytecode compiled
    with tempfile.TemporaryDirectory(prefix="cais-en-ab-") as top:
        subprocess.run(f"git -C {REPO} archive {args.base} cais | tar -x -C {top}", shell=True, check=True)
        for tree in (top, REPO):
            compileall.compile_dir(os.path.join(tree, "cais"), quiet=1)
        os.environ.pop("PYTHONPATH", None)
        cwd = os.path.join(top, "cwd")  # `python -m` puts the working directory first on sys.path
        os.mkdir(cwd)
        os.chdir(cwd)
        with _daemon(top) as old, _daemon(None) as new:
            sides = {f"{args.base}": old, "this tree": new}
            boxes = {name: _docker(d, "run", "-d", "--network", "none", "busybox", "sleep", "600")
                     for name, d in sides.items()}
            ops = {"run --rm true": lambda name: ["run", "--rm", "--network", "none", "busybox", "true"],
                   "exec true": lambda name: ["exec", boxes[name], "true"]}
            results: dict[tuple[str, str], list[tuple[float, list[float]]]] = {}
            for op, argv in ops.items():
                for name, d in sides.items():
                    _timed(d, argv(name))  # warm-up
                for i in range(args.runs):
                    for name, d in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                        results.setdefault((op, name), []).append(_timed(d, argv(name)))
            concurrent: dict[str, list[float]] = {}
            for i in range(3 if args.concurrent else 0):
                for name, d in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                    concurrent.setdefault(name, []).append(_concurrent(d, args.concurrent))
    print(f"{'':28s} {'wall median':>11s} {'engine CPU':>10s} {'caisd':>6s} {'superv.':>7s} {'reaped':>6s} "
          f"{'zygote':>6s}   ms, {args.runs} runs each, interleaved; CPU: mean (ticks of 10 ms)")
    for (op, name), samples in results.items():
        wall = statistics.median(s[0] for s in samples) * 1000
        parts = [statistics.mean(s[1][i] for s in samples) * 1000 for i in range(4)]
        print(f"{op + ', ' + name:28s} {wall:11.1f} {sum(parts):10.1f} " + " ".join(
            f"{p:{w}.1f}" for p, w in zip(parts, (6, 7, 6, 6), strict=True)))
    for name, samples in concurrent.items():
        print(f"{args.concurrent} concurrent starts, {name}: median {statistics.median(samples):.2f} s")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
