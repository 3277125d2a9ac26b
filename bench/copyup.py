"""Copy-up of an image directory into an empty volume: cais's copy_up vs `cp -a` (GNU coreutils).

A generated tree (DIRS directories of FILES small files each, plus a few 8 MB files, symlinks and
hard links) is copied into a fresh directory per run; throughput is bytes of file data per second
of wall time; medians of RUNS runs after one warm-up. Both copy owners, modes, times and xattrs.

    .venv/bin/python bench/copyup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cais.volume.copyup import copy_up  # noqa: E402


def _generate(root: str, dirs: int, files: int) -> int:
    rng = random.Random(6)
    top = os.path.join(root, "srv", "data")
    total = 0
    for d in range(dirs):
        sub = os.path.join(top, f"d{d:03}")
        os.makedirs(sub)
        for f in range(files):
            data = rng.randbytes(rng.randint(100, 16_000))
            with open(os.path.join(sub, f"f{f:04}"), "wb") as out:
                out.write(data)
            total += len(data)
        os.symlink(f"f{0:04}", os.path.join(sub, "link"))
        os.link(os.path.join(sub, "f0000"), os.path.join(sub, "hard"))
    for i in range(3):
        with open(os.path.join(top, f"big{i}"), "wb") as out:
            out.write(rng.randbytes(8 << 20))
        total += 8 << 20
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dirs", type=int, default=40)
    ap.add_argument("--files", type=int, default=100)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cais-vo-bench-")
    try:
        rootfs = os.path.join(work, "rootfs")
        total = _generate(rootfs, args.dirs, args.files)
        results: dict[str, list[float]] = {"cais copy_up": [], "cp -a": []}
        for run in range(args.runs + 1):
            for name in results:
                dest = os.path.join(work, f"{name.split()[0]}-{run}")
                os.mkdir(dest)
                start = time.perf_counter()
                if name == "cp -a":
                    subprocess.run(["cp", "-a", "--", os.path.join(rootfs, "srv", "data") + "/.", dest], check=True)
                else:
                    copy_up(rootfs, "/srv/data", dest)
                elapsed = time.perf_counter() - start
                if run:
                    results[name].append(elapsed)
                shutil.rmtree(dest)
        print(f"copy-up of {args.dirs * args.files} files + 3 x 8 MB ({total / 1e6:.0f} MB), median of {args.runs}:")
        base = statistics.median(results["cp -a"])
        for name, times in results.items():
            t = statistics.median(times)
            print(f"  {name:14} {t * 1000:8.0f} ms  {total / t / 1e6:7.0f} MB/s  x{t / base:.2f} of cp -a")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
