"""Benchmark: `run --rm busybox true` end to end, `exec true`, and 100 idle containers.

    cais CLI → caisd  |  docker CLI → caisd  |  docker CLI → dockerd 20.10  |  podman 4.3

All run the same busybox image (bootstrapped by cais, saved, loaded into the peers), with no
network (--network none). The engine's memory per idle container is measured as docker's issue
asks: (RSS of all cais processes with 100 idle containers − RSS with none) / 100; podman's is its
conmon's RSS, one per container. Then where the CPU of one `run --rm busybox true` goes, process
by process: the client, caisd, the supervisor, its init zygote, and the container's init (reaped
by the supervisor, so counted in its children's time).

    .venv/bin/python bench/run_latency.py [--runs N] [--idle 100]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.caisd import VENV_BIN, _remove_cgroups, caisd  # noqa: E402
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


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> tuple[float, float, float, float]:
    """utime, stime, cutime, cstime of `pid` (ms), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return tuple(int(x) * TICK_MS for x in fields[11:15])  # type: ignore[return-value]


def zygote_pid(supervisor: int) -> int | None:
    """The supervisor's init zygote: its child started as `bootstrap … zygote`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == supervisor and b"zygote" in argv:
            return int(entry)
    return None


def cpu_breakdown(cmd: list[str], runs: int, caisd_pid: int, supervisor: int) -> dict[str, float]:
    """CPU (ms) per run of `cmd`, process by process.

    The container's init is cloned by the zygote but reaped by the supervisor: its CPU is the
    supervisor's children's time (cutime + cstime), with any runtime helper the supervisor reaps.
    """
    zygote = zygote_pid(supervisor)
    procs = {"caisd": caisd_pid, "supervisor": supervisor, **({"zygote": zygote} if zygote else {})}
    subprocess.run(cmd, check=True, capture_output=True)  # warm up
    before = {name: cpu_ms(pid) for name, pid in procs.items()}
    t0 = os.times()
    for _ in range(runs):
        subprocess.run(cmd, check=True, capture_output=True)
    t1 = os.times()
    after = {name: cpu_ms(pid) for name, pid in procs.items()}
    delta = {name: [(a - b) / runs for a, b in zip(after[name], before[name], strict=True)] for name in procs}
    rows = {"client (CLI process)": (t1.children_user + t1.children_system - t0.children_user
                                     - t0.children_system) * 1000 / runs,
            "caisd": delta["caisd"][0] + delta["caisd"][1],
            "caisd's reaped children": delta["caisd"][2] + delta["caisd"][3],
            "supervisor": delta["supervisor"][0] + delta["supervisor"][1],
            "zygote (clones each init)": sum(delta["zygote"][:2]) if zygote else float("nan"),
            "container init + helpers (supervisor's reaped children)":
                delta["supervisor"][2] + delta["supervisor"][3]}
    rows["total"] = sum(v for v in rows.values() if v == v)  # NaN: no zygote
    return rows


def podman_options() -> list[str]:
    """The `podman run` options this host needs to run a container at all (none on most hosts).

    Podman 4.3 as root lowers its own RLIMIT_NPROC to kernel.pid_max (containers/common's default
    `nproc` ulimit), then asks the runtime for that NPROC and RLIMIT_NOFILE 1048576. Where the hard
    NOFILE is lower and CAP_SYS_RESOURCE is withheld (this sandbox: hard NOFILE 20000), the runtime's
    setrlimit fails with EPERM; ask for the limits it already has. Both are needed: a --ulimit
    replaces the default ulimits, and podman then fills a missing NPROC with 1048576.
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile == resource.RLIM_INFINITY or nofile >= 1048576:
        return []
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def conmon_pids(root: str) -> list[int]:
    """The conmon processes of the podman whose storage is under `root`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/conmon") and any(a.startswith(root.encode() + b"/") for a in argv):
            pids.append(int(entry))
    return pids


def podman(image_tar: str, runs: int, idle: int) -> dict[str, float]:
    """podman 4.3 on its own temporary roots: `run --rm true`, and `idle` idle containers' conmons.

    runc, like dockerd here (crun 1.8 refuses hybrid cgroups where a controller sits on the v2
    hierarchy, as hugetlb does on this VM); a cgroupfs parent of its own; never a pull; no network.
    """
    results: dict[str, float] = {}
    root = tempfile.mkdtemp(prefix="cais-en-podman-", dir="/tmp")
    cgroup_parent = f"/cais-en-podman-{secrets.token_hex(4)}"
    cmd = ["podman", "--root", f"{root}/root", "--runroot", f"{root}/run", "--tmpdir", f"{root}/tmp",
           "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
    run = ["run", "--pull", "never", "--network", "none", "--cgroup-parent", cgroup_parent, *podman_options()]
    image = "docker.io/library/busybox"
    try:
        subprocess.run([*cmd, "load", "-i", image_tar], check=True, capture_output=True)
        results["podman: run --rm true"] = timed([*cmd, *run, "--rm", image, "true"], runs)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: subprocess.run([*cmd, *run, "-d", image, "sleep", "3600"], check=True,
                                                   capture_output=True), range(idle)))
        results[f"podman: {idle} containers started concurrently (s)"] = time.perf_counter() - start
        time.sleep(2)
        conmons = conmon_pids(root)
        results["podman: conmon processes per idle container"] = len(conmons) / idle
        results["podman: conmon RSS per idle container (kB)"] = rss_kb(conmons) / idle
    except subprocess.CalledProcessError as e:  # e.g. a sandbox whose cgroups or rlimits podman cannot use
        print(f"podman could not run here: {e.stderr.decode(errors='replace').strip()[-300:]}")
    finally:
        subprocess.run([*cmd, "rm", "-af", "-t", "0"], capture_output=True, timeout=600)
        deadline = time.monotonic() + 30
        while conmon_pids(root) and time.monotonic() < deadline:  # each conmon leaves after its container
            time.sleep(0.1)
        _unmount_under(root)
        _remove_cgroups(cgroup_parent)
        shutil.rmtree(root, ignore_errors=True)
    return results


def in_process(runs: int, cgroup_parent: str) -> float:
    """`cais run --rm busybox true` with no daemon: the engine in the CLI's process, its own roots."""
    root = tempfile.mkdtemp(prefix="cais-en-bench-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("CAIS_HOST", "DOCKER_HOST")}
    env.update(CAIS_DATA_ROOT=f"{root}/data", CAIS_EXEC_ROOT=f"{root}/exec", CAIS_CGROUP_PARENT=cgroup_parent)
    cais = os.path.join(VENV_BIN, "cais")
    try:
        subprocess.run([cais, "image", "bootstrap", "busybox"], check=True, capture_output=True, env=env)
        return timed([cais, "run", "--rm", "busybox", "true"], runs, env)
    finally:
        with open(f"{root}/exec/supervisor.lock") as f:
            supervisor = int(f.read())
        os.kill(supervisor, signal.SIGTERM)
        while os.path.exists(f"/proc/{supervisor}/stat"):  # not our child: cannot waitpid it
            time.sleep(0.05)
        _unmount_under(root)
        _remove_cgroups(cgroup_parent)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    # An installed cais has its bytecode compiled (pip does it): do not time the compiler at every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(os.path.join(os.path.dirname(__file__), "..", "cais"), quiet=1)
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
        cpu = {client: cpu_breakdown([*argv, "run", "--rm", "busybox", "true"], args.runs,
                                     d.proc.pid, d.supervisor_pid())  # type: ignore[union-attr, arg-type]
               for client, argv in (("cais CLI", cais), ("docker CLI", docker_cais))}
        box = subprocess.run([*cais, "run", "-d", "busybox", "sleep", "3600"], check=True,
                             capture_output=True, text=True).stdout.strip()
        results["cais CLI → caisd: exec true"] = timed([*cais, "exec", box, "true"], args.runs)
        results["docker CLI → caisd: exec true"] = timed([*docker_cais, "exec", box, "true"], args.runs)
        subprocess.run([*cais, "rm", "-f", box], check=True, capture_output=True)
        results["cais CLI, no daemon (in-process engine): run --rm true"] = in_process(
            args.runs, d.cgroup_parent + "/in-process")
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
            results.update(podman(image_tar, args.runs, args.idle))
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    for name, value in results.items():
        print(f"{name:62s} {value:10.3f}")
    base = results["docker CLI → dockerd: run --rm true"]
    for name in ("cais CLI → caisd: run --rm true", "docker CLI → caisd: run --rm true",
                 "cais CLI, no daemon (in-process engine): run --rm true"):
        print(f"{name}: {base / results[name]:.1f}x faster than docker run on dockerd")
    print("\nCPU per `run --rm busybox true` against caisd (ms; median wall time above):")
    print(f"{'':62s} {'cais CLI':>10s} {'docker CLI':>10s}")
    for row in cpu["cais CLI"]:
        print(f"{row:62s} {cpu['cais CLI'][row]:10.1f} {cpu['docker CLI'][row]:10.1f}")
    if "podman: run --rm true" in results:
        for name in ("cais CLI → caisd: run --rm true", "docker CLI → caisd: run --rm true",
                     "docker CLI → dockerd: run --rm true"):
            print(f"{name}: {results['podman: run --rm true'] / results[name]:.1f}x faster than podman run")


if __name__ == "__main__":
    main()
