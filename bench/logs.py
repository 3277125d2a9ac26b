"""Benchmark: serving big container logs, caisd vs dockerd 20.10, with the docker CLI.

For each daemon, driver (json-file, local) and size (100k and 1M lines of `seq`), one container
prints the lines and stays up; then `docker logs` reads them back:

    all | --tail 10 | -f (catching up to the last line) | --since (now: nothing to show) |
    --since half (the middle entry's time: the second half shown) | -t

Runs alternate between the daemons (and the baseline tree, `--baseline DIR`: caisd run from another
checkout of cais, for an A/B) so the machine's load hits them alike. Reported per case: the median wall
time and the median CPU time of the daemon (plus, for cais, its supervisor) while serving; and the
write side: how long the container took to print the lines and whether every line was logged.

    .venv/bin/python bench/logs.py [--runs 5] [--lines 100000,1000000] [--baseline /tmp/cais-base]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import Caisd, caisd  # noqa: E402
from tests.peers import Dockerd, dockerd  # noqa: E402

CASES = ("all", "tail 10", "follow", "since", "since half", "timestamps")


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class Target:
    def __init__(self, name: str, host: str, pids: Callable[[], list[int]]) -> None:
        self.name, self.host, self.pids = name, host, pids
        self.containers: dict[tuple[str, int], str] = {}
        self.write: dict[tuple[str, int], tuple[float, int, int]] = {}
        self.half: dict[tuple[str, int], str] = {}  # the time of the middle entry
        self.write_cpu: dict[tuple[str, int], list[float]] = {}  # daemon CPU while the lines were logged
        self.write_took: dict[tuple[str, int], list[float]] = {}

    def docker(self, *args: str) -> list[str]:
        return ["docker", "-H", self.host, *args]

    def prepare(self, driver: str, lines: int) -> None:
        """A container printing `lines` lines then sleeping; wait until they are all logged. The
        container prepared before for the same case is removed."""
        if (driver, lines) in self.containers:
            subprocess.run(self.docker("rm", "-f", self.containers.pop((driver, lines))), capture_output=True)
        pids = self.pids()
        cpu0, start = cpu_ticks(pids), time.perf_counter()
        cid = subprocess.run(self.docker("run", "-d", "--network", "none", "--log-driver", driver, "busybox", "sh",
                                         "-c", f"seq 1 {lines}; exec sleep 3600"),
                             check=True, capture_output=True, text=True).stdout.strip()
        while True:
            tail = subprocess.run(self.docker("logs", "--tail", "1", cid), capture_output=True, text=True)
            if tail.stdout.strip() == str(lines):
                break
            time.sleep(0.2)
        took = time.perf_counter() - start
        self.write_cpu.setdefault((driver, lines), []).append((cpu_ticks(pids) - cpu0) / os.sysconf("SC_CLK_TCK"))
        self.write_took.setdefault((driver, lines), []).append(took)
        count = subprocess.run(self.docker("logs", cid), capture_output=True).stdout.count(b"\n")
        self.containers[(driver, lines)] = cid
        middle = subprocess.run(self.docker("logs", "-t", "--tail", str(lines // 2), cid), capture_output=True)
        self.half[(driver, lines)] = middle.stdout.split(b" ", 1)[0].decode()
        self.write[(driver, lines)] = (took, count, rss_kb(self.pids()))

    def run_case(self, case: str, driver: str, lines: int) -> tuple[float, float]:
        """(wall seconds, daemon CPU seconds) of one `docker logs`."""
        cid = self.containers[(driver, lines)]
        args = {"all": [], "tail 10": ["--tail", "10"], "follow": ["-f"], "timestamps": ["-t"],
                "since": ["--since", f"{time.time():.9f}"], "since half": ["--since", self.half.get((driver, lines), "")],
                }[case]
        pids = self.pids()
        cpu0, start = cpu_ticks(pids), time.perf_counter()
        if case == "follow":  # read until the last line, then hang up
            proc = subprocess.Popen(self.docker("logs", *args, cid), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            seen = 0
            assert proc.stdout is not None
            while seen < lines and (chunk := proc.stdout.read1(1 << 20)):
                seen += chunk.count(b"\n")
            proc.kill()
            proc.wait()
        else:
            subprocess.run(self.docker("logs", *args, cid), check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        return wall, (cpu_ticks(pids) - cpu0) / os.sysconf("SC_CLK_TCK")


def caisd_target(name: str, d: Caisd) -> Target:
    return Target(name, d.host, lambda: [p for p in (d.proc.pid if d.proc else None, d.supervisor_pid()) if p])


def dockerd_target(peer: Dockerd) -> Target:
    def pids() -> list[int]:
        with open(os.path.join(peer.root, "dockerd.pid")) as f:
            return [int(f.read())]
    return Target("dockerd", peer.host, pids)


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(os.path.join(os.path.dirname(__file__), "..", "cais"), quiet=1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", default="100000,1000000")
    parser.add_argument("--drivers", default="json-file,local")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--baseline", help="another checkout of cais to run as caisd (A/B)")
    parser.add_argument("--no-dockerd", action="store_true")
    parser.add_argument("--write-runs", type=int, default=1, help="containers written per case (medians)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.lines.split(",")]
    drivers, cases = args.drivers.split(","), args.cases.split(",")
    if args.baseline:
        compileall.compile_dir(os.path.join(args.baseline, "cais"), quiet=1)
    with caisd() as new, caisd(bootstrap=False) as old, dockerd() as peer:
        targets = [caisd_target("caisd", new)]
        if args.baseline:
            old.kill()
            old.env = {"PYTHONPATH": args.baseline}
            old.start()
            old.cais("image", "bootstrap", "busybox", timeout=120)
            targets.insert(0, caisd_target("caisd (baseline)", old))
        if not args.no_dockerd:
            tar = os.path.join(new.root, "busybox.tar")
            new.cais("save", "-o", tar, "busybox", timeout=120)
            peer.docker("load", "-i", tar)
            targets.append(dockerd_target(peer))
        for _ in range(args.write_runs):
            for driver in drivers:
                for lines in sizes:
                    for t in targets:
                        t.prepare(driver, lines)
        samples: dict[tuple[str, str, str, int], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for driver in drivers:
                for lines in sizes:
                    for case in cases:
                        for t in targets:
                            samples.setdefault((t.name, case, driver, lines), []).append(
                                t.run_case(case, driver, lines))
        load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("write side (medians): seconds from `run` until every line was logged, daemon (+ supervisor) CPU "
          "meanwhile, lines logged, RSS")
    for t in targets:
        for (driver, lines), (took, count, rss) in t.write.items():
            took, cpu = statistics.median(t.write_took[(driver, lines)]), statistics.median(t.write_cpu[(driver, lines)])
            print(f"  {t.name:18s} {driver:9s} {lines:>8d} lines: {took:7.2f} s, CPU {cpu:6.2f} s, {count} logged, "
                  f"{rss / 1024:6.1f} MB")
    print(f"{'case':34s} " + " ".join(f"{t.name + ' wall/cpu':>26s}" for t in targets) + "   wall ratio vs dockerd")
    for driver in drivers:
        for lines in sizes:
            for case in cases:
                cells, walls = [], {}
                for t in targets:
                    runs = samples[(t.name, case, driver, lines)]
                    wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                    walls[t.name] = wall
                    cells.append(f"{wall:11.3f} s {cpu:9.2f} s")
                ratio = ""
                if "dockerd" in walls:
                    ratio = " ".join(f"{walls['dockerd'] / walls[n]:5.2f}x" for n in walls if n != "dockerd")
                print(f"{driver + ' ' + str(lines) + ' ' + case:34s} " + " ".join(f"{c:>26s}" for c in cells)
                      + "   " + ratio)


if __name__ == "__main__":
    main()
