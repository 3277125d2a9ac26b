"""The storage driver's share of `run --rm`: another git revision against this tree's, interleaved.

    .venv/bin/python bench/storage.py [--base REV] [--rounds N] [--runs N]   # the driver alone
    .venv/bin/python bench/storage.py --base REV --cli N                     # cais CLI → caisd

The driver alone: per round, one process per tree runs `--runs` times what the engine asks of the
overlay driver for a `run --rm` — create_rw (volatile), mount, unmount, remove_rw — on a data root
of its own under /tmp (a busybox layer), waiting for the background chores (deletions, what is
made ahead) between runs; printed: the median of each step, and the CPU of the four. `--cli`:
two private caisds (bench/engine_ab.py's), one per tree, and `cais run --rm busybox true` sent to
each in turn N times; printed: median wall time, the engines' CPU per run, and the median of the
paired differences. The load average is printed at the end.
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STEPS = ("create", "mount", "unmount", "remove")


def _child(runs: int, root: str, busybox: str) -> None:
    from cais.storage import open_driver, reclaim

    driver = open_driver(root, "overlay")
    if not driver.has_layer("busybox"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            tf.add(busybox, arcname=".")
        buf.seek(0)
        driver.apply_diff("busybox", None, buf)
    rows = []
    for _ in range(runs):
        cid = os.urandom(32).hex()
        cpu, t0 = time.process_time(), time.perf_counter()
        driver.create_rw(cid, "busybox", volatile=True)
        t1 = time.perf_counter()
        driver.mount(cid)
        t2 = time.perf_counter()
        driver.unmount(cid)
        t3 = time.perf_counter()
        driver.remove_rw(cid)
        t4 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, time.process_time() - cpu))
        reclaim.wait_idle()
        time.sleep(0.02)
    print(json.dumps(rows))


def _driver_alone(trees: dict[str, str], rounds: int, runs: int, top: str) -> None:
    sys.path.insert(0, REPO)
    from cais.image.bootstrap import busybox_rootfs

    busybox = busybox_rootfs(os.path.join(top, "busybox"))
    results: dict[str, list] = {name: [] for name in trees}
    for i in range(rounds):
        for name, tree in (list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]):
            root = os.path.join(top, "root-" + name.replace(" ", "-"))
            done = subprocess.run([sys.executable, __file__, "--child", str(runs), root, busybox], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": tree}, cwd=top)
            if done.returncode:
                raise SystemExit(done.stderr)
            results[name] += json.loads(done.stdout)
    print(f"{'':12s} " + " ".join(f"{s:>8s}" for s in STEPS) + f" {'CPU':>8s}   ms, medians of {rounds * runs} runs")
    for name, rows in results.items():
        print(f"{name:12s} " + " ".join(f"{statistics.median(r[k] for r in rows) * 1000:8.2f}" for k in range(5)))


def _cli(trees: dict[str, str], runs: int, top: str) -> None:
    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    import engine_ab

    cais = os.path.join(REPO, ".venv", "bin", "cais")

    def timed(d) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        before = engine_ab._parts(d)
        start = time.perf_counter()
        subprocess.run([cais, "-H", d.host, "run", "--rm", "busybox", "true"], check=True, capture_output=True)
        wall = time.perf_counter() - start
        time.sleep(0.2)  # what the engine does after answering counts too
        return wall, sum(engine_ab._parts(d)) - sum(before)

    cwd = os.path.join(top, "cwd")  # `python -m` puts the working directory first on sys.path
    os.mkdir(cwd)
    os.chdir(cwd)
    names = list(trees)
    with engine_ab._daemon(trees[names[0]]) as a, engine_ab._daemon(trees[names[1]]) as b:
        sides = {names[0]: a, names[1]: b}
        for d in sides.values():
            subprocess.run([cais, "-H", d.host, "image", "bootstrap", "busybox"], check=True, capture_output=True)
            for _ in range(3):
                timed(d)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for i in range(runs):
            for name, d in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                results[name].append(timed(d))
    for name, rows in results.items():
        print(f"{name:12s} wall median {statistics.median(r[0] for r in rows) * 1000:6.1f} ms, "
              f"engine CPU {statistics.mean(r[1] for r in rows) * 1000:5.1f} ms per run (mean; ticks of 10 ms)")
    diffs = [b[0] - a[0] for a, b in zip(results[names[0]], results[names[1]], strict=True)]
    print(f"paired ({names[1]}) - ({names[0]}): median {statistics.median(diffs) * 1000:+.1f} ms, "
          f"faster in {sum(d < 0 for d in diffs)} of {len(diffs)} pairs")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--cli", type=int, default=0, help="N runs of `cais run --rm` against two caisds")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed cais has its bytecode compiled
    top = tempfile.mkdtemp(prefix="cais-st-bench-")
    try:
        trees = {}
        for name, rev in ((args.base, args.base), ("this tree", "HEAD")):
            tree = os.path.join(top, "tree-" + ("base" if rev == args.base else "head"))
            os.mkdir(tree)
            subprocess.run(f"git -C {REPO} archive {rev} cais | tar -x -C {tree}", shell=True, check=True)
            compileall.compile_dir(os.path.join(tree, "cais"), quiet=1)
            trees[name] = tree
        if args.cli:
            _cli(trees, args.cli, top)
        else:
            _driver_alone(trees, args.rounds, args.runs, top)
    finally:
        from tests.storage.conftest import unmount_under

        unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
