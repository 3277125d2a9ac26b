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


def _cpu(pid: int) -> float:
    """Seconds of CPU of `pid` and of the children it reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def _family(d: caisd_mod.Caisd) -> list[int]:
    """caisd, the supervisor and the supervisor's children (the zygote; idle containers)."""
    sup = d.supervisor_pid() or 0
    pids = [d.proc.pid, sup]  # type: ignore[union-attr]
    with contextlib.suppress(OSError), open(f"/proc/{sup}/task/{sup}/children") as f:
        pids += [int(p) for p in f.read().split()]
    return pids


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


def _timed(d: caisd_mod.Caisd, argv: list[str]) -> tuple[float, float]:
    pids = _family(d)
    before = sum(_cpu(p) for p in pids)
    start = time.perf_counter()
    subprocess.run(["docker", "-H", d.host, *argv], check=True, capture_output=True)
    wall = time.perf_counter() - start
    time.sleep(0.2)  # what the engine does after answering (e.g. deleting directories) counts too
    return wall, sum(_cpu(p) for p in pids) - before


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
    parser.add_argument("--concurrent", type=int, default=10)
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
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for op, argv in ops.items():
                for name, d in sides.items():
                    _timed(d, argv(name))  # warm-up
                for i in range(args.runs):
                    for name, d in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                        results.setdefault((op, name), []).append(_timed(d, argv(name)))
            concurrent: dict[str, list[float]] = {}
            for i in range(3):
                for name, d in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                    concurrent.setdefault(name, []).append(_concurrent(d, args.concurrent))
    print(f"{'':28s} {'wall median ms':>15s} {'engine CPU ms':>14s}   ({args.runs} runs each, interleaved)")
    for (op, name), samples in results.items():
        wall = statistics.median(s[0] for s in samples) * 1000
        cpu = statistics.mean(s[1] for s in samples) * 1000  # ticks of 10 ms: the mean, not the median
        print(f"{op + ', ' + name:28s} {wall:15.1f} {cpu:14.1f}")
    for name, samples in concurrent.items():
        print(f"{args.concurrent} concurrent starts, {name}: median {statistics.median(samples):.2f} s")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
