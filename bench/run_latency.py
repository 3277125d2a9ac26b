"""Benchmark: `run --rm busybox true` end to end, `exec true`, and 100 idle containers.

    cais CLI → caisd  |  docker CLI → caisd  |  docker CLI → dockerd 20.10  |  podman 4.3

All run the same busybox image (bootstrapped by cais, saved, loaded into the peers), with no
network (--network none). The engine's memory per idle container is measured as docker's issue
asks: (RSS of all cais processes with 100 idle containers − RSS with none) / 100.

    .venv/bin/python bench/run_latency.py [--runs N] [--idle 100]
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
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import VENV_BIN, caisd  # noqa: E402
from tests.peers import _unmount_under, dockerd  # noqa: E402


def timed(cmd: list[str], runs: int, env: dict | None = None) -> float:
    samples = []
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm up
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle", type=int, default=100)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with caisd() as d:
        cais = [os.path.join(VENV_BIN, "cais"), "-H", d.host]
        docker_cais = ["docker", "-H", d.host]
        results["cais CLI → caisd: run --rm true"] = timed([*cais, "run", "--rm", "busybox", "true"], args.runs)
        results["docker CLI → caisd: run --rm true"] = timed([*docker_cais, "run", "--rm", "busybox", "true"],
                                                             args.runs)
        box = subprocess.run([*cais, "run", "-d", "busybox", "sleep", "3600"], check=True,
                             capture_output=True, text=True).stdout.strip()
        results["cais CLI → caisd: exec true"] = timed([*cais, "exec", box, "true"], args.runs)
        results["docker CLI → caisd: exec true"] = timed([*docker_cais, "exec", box, "true"], args.runs)
        subprocess.run([*cais, "rm", "-f", box], check=True, capture_output=True)
        image_tar = os.path.join(d.root, "busybox.tar")
        subprocess.run([*docker_cais, "save", "-o", image_tar, "busybox"], check=True, capture_output=True)

        pids = [d.proc.pid, d.supervisor_pid()]  # type: ignore[union-attr]
        before = rss_kb(pids)  # type: ignore[arg-type]
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: subprocess.run(
                [*docker_cais, "run", "-d", "busybox", "sleep", "3600"], check=True, capture_output=True,
                text=True).stdout.strip(), range(args.idle)))
        results[f"docker CLI → caisd: {args.idle} containers started concurrently (s)"] = time.perf_counter() - start
        time.sleep(2)
        after = rss_kb(pids)  # type: ignore[arg-type]
        results["caisd + supervisor RSS with no container (MB)"] = before / 1024
        results[f"caisd + supervisor RSS with {args.idle} idle containers (MB)"] = after / 1024
        results["engine memory per idle container (kB)"] = (after - before) / args.idle
        subprocess.run([*docker_cais, "rm", "-f", *ids], check=True, capture_output=True, timeout=600)

        with dockerd() as peer:
            subprocess.run(["docker", "-H", peer.host, "load", "-i", image_tar], check=True, capture_output=True)
            results["docker CLI → dockerd: run --rm true"] = timed(
                ["docker", "-H", peer.host, "run", "--rm", "--network", "none", "busybox", "true"], args.runs)
            box = subprocess.run(["docker", "-H", peer.host, "run", "-d", "--network", "none", "busybox", "sleep",
                                  "3600"], check=True, capture_output=True, text=True).stdout.strip()
            results["docker CLI → dockerd: exec true"] = timed(["docker", "-H", peer.host, "exec", box, "true"],
                                                               args.runs)
        if shutil.which("podman"):
            root = tempfile.mkdtemp(prefix="cais-en-podman-", dir="/tmp")
            podman = ["podman", "--root", f"{root}/root", "--runroot", f"{root}/run", "--cgroup-manager",
                      "cgroupfs", "--events-backend", "file"]
            try:
                subprocess.run([*podman, "load", "-i", image_tar], check=True, capture_output=True)
                results["podman: run --rm true"] = timed([*podman, "run", "--rm", "--network", "none",
                                                          "docker.io/library/busybox", "true"], args.runs)
            except subprocess.CalledProcessError as e:  # e.g. a sandbox whose RLIMIT_NOFILE podman cannot set
                print(f"podman could not run here: {e.stderr.decode(errors='replace').strip()[-200:]}")
            finally:
                subprocess.run([*podman, "rm", "-af"], capture_output=True)
                _unmount_under(root)
                shutil.rmtree(root, ignore_errors=True)
    for name, value in results.items():
        print(f"{name:62s} {value:10.3f}")
    base = results["docker CLI → dockerd: run --rm true"]
    for name in ("cais CLI → caisd: run --rm true", "docker CLI → caisd: run --rm true"):
        print(f"{name}: {base / results[name]:.1f}x faster than docker run on dockerd")
    if "podman: run --rm true" in results:
        print(f"cais CLI → caisd vs podman run: {results['podman: run --rm true'] / results['cais CLI → caisd: run --rm true']:.1f}x")


if __name__ == "__main__":
    main()
