"""`cais run --rm busybox true` on the default bridge: caisd of another git revision against this tree's.

    .venv/bin/python bench/net_ab.py [--base REV] [--rounds N] [--per-round N]

Two private caisds (tests/caisd.py), one from `git archive REV` (default: main), one from this
worktree, each started by `unshare -n` in a network namespace of its own with a default bridge
(so the host's networking is never touched), as `docker run` uses one. Rounds alternate between
them, so other load on the machine falls on both alike. Printed per side: the median wall time of
the command (each tree's own `cais` CLI) and the mean CPU of caisd and of the supervisor per run,
then the load average.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests import caisd as caisd_mod  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _cpu_ms(pid: int) -> float:
    """CPU of `pid` and of the children it reaped, ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) * TICK_MS


@contextlib.contextmanager
def _daemon(tree: str, bridge: str) -> Iterator[tuple[caisd_mod.Caisd, dict]]:
    """A caisd importing cais from `tree`, in a network namespace of its own; the CLI's environment."""
    env = {**os.environ, "PYTHONPATH": tree}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    original = caisd_mod.Caisd.args

    def args(self: caisd_mod.Caisd) -> list[str]:  # `python -m`, so that PYTHONPATH decides
        return ["unshare", "-n", "--", sys.executable, "-m", "cais.daemon.main", *original(self)[1:]]

    caisd_mod.Caisd.args = args  # type: ignore[method-assign]
    os.environ["PYTHONPATH"] = tree  # its supervisor too
    try:
        stack = contextlib.ExitStack()
        d = stack.enter_context(caisd_mod.caisd(bootstrap=False, network_args=["--bridge", bridge],
                                                prefix="cais-nab"))
    finally:
        caisd_mod.Caisd.args = original  # type: ignore[method-assign]
        os.environ.pop("PYTHONPATH", None)
    with stack:
        env["CAIS_HOST"] = d.host
        subprocess.run([os.path.join(caisd_mod.VENV_BIN, "cais"), "image", "bootstrap", "busybox"], check=True,
                       capture_output=True, env=env, timeout=300)
        yield d, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=5)
    args = parser.parse_args()
    command = [os.path.join(caisd_mod.VENV_BIN, "cais"), "run", "--rm", "busybox", "true"]
    with tempfile.TemporaryDirectory(prefix="cais-nab-") as top:
        subprocess.run(f"git -C {REPO} archive {args.base} cais | tar -x -C {top}", shell=True, check=True)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        for tree in (top, REPO):
            compileall.compile_dir(os.path.join(tree, "cais"), quiet=1)
        cwd = os.path.join(top, "cwd")  # `python -m` puts the working directory first on sys.path
        os.mkdir(cwd)
        os.chdir(cwd)
        with _daemon(top, "cais-nab0") as old, _daemon(REPO, "cais-nab1") as new:
            sides = {args.base: old, "this tree": new}
            wall: dict[str, list[float]] = {name: [] for name in sides}
            cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for _, env in sides.values():
                for _ in range(3):  # warm-up
                    subprocess.run(command, check=True, capture_output=True, env=env)
            for i in range(args.rounds):
                for name, (d, env) in list(sides.items())[::1 if i % 2 == 0 else -1]:
                    sup = d.supervisor_pid() or 0
                    for _ in range(args.per_round):
                        before = _cpu_ms(d.proc.pid), _cpu_ms(sup)  # type: ignore[union-attr]
                        start = time.perf_counter()
                        subprocess.run(command, check=True, capture_output=True, env=env)
                        wall[name].append((time.perf_counter() - start) * 1000)
                        after = _cpu_ms(d.proc.pid), _cpu_ms(sup)  # type: ignore[union-attr]
                        cpu[name].append((after[0] - before[0], after[1] - before[1]))
    print(f"{'':12s} {'wall median':>11s} {'caisd CPU':>9s} {'superv. CPU':>11s}   ms, {len(wall[args.base])} runs "
          "each, interleaved; CPU: mean (ticks of 10 ms)")
    for name in sides:
        print(f"{name:12s} {statistics.median(wall[name]):11.1f} {statistics.mean(c[0] for c in cpu[name]):9.1f} "
              f"{statistics.mean(c[1] for c in cpu[name]):11.1f}")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
