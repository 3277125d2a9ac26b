"""Benchmark: the `cais` CLI's own cost, old tree against new, interleaved, against one caisd.

    .venv/bin/python bench/cli_latency.py [--old REF] [--runs N]

REF (default `main`) is exported with `git archive` and installed next to this tree in two
layouts, each in its own temporary venv: `installed` (`pip install`, as a user gets it) and
`editable` (`pip install -e` in compat mode, as a developer's worktree). Every round runs each
variant once, alternating which goes first; the medians of wall time and of the CLI process's
CPU time (user + system, from its rusage: the daemon's share is not in it) are printed, with
the `docker` CLI against the same caisd for reference, the venv's bare interpreter (`python -c
pass`) next to `--version`, and (--dockerd) `docker run`/`exec` against a private dockerd
20.10, the issue's baseline, in the same rounds.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, HERE)

from tests.caisd import caisd  # noqa: E402
from tests.peers import dockerd  # noqa: E402

_WRAPPER = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from cais.cli.main import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""  # what pip wrote for a [project.scripts] entry, for trees from before bin/cais


def _venv(root: str, tree: str, editable: bool) -> str:
    """A venv with `tree` laid out as pip would install it (no dependencies: the client needs
    none, and no index to build a wheel from): the package in site-packages, or for `editable`
    the .pth line of a compat editable install (`--config-settings editable_mode=compat`, as
    the project's .venv) pointing at the tree; the tree's bin/cais with the venv's interpreter
    on its first line, as pip installs it. Returns the script's path."""
    subprocess.run([sys.executable, "-m", "venv", root], check=True)
    site = os.path.join(root, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    if editable:
        with open(os.path.join(site, "__editable__.cais-0.1.0.pth"), "w") as f:
            f.write(tree + "\n")
    else:
        shutil.copytree(os.path.join(tree, "cais"), os.path.join(site, "cais"))
    python = os.path.join(root, "bin", "python")
    try:
        with open(os.path.join(tree, "bin", "cais")) as f:
            text = f"#!{python}\n" + f.read().split("\n", 1)[1]
    except FileNotFoundError:
        text = _WRAPPER.format(python=python)
    script = os.path.join(root, "bin", "cais")
    with open(script, "w") as f:
        f.write(text)
    os.chmod(script, 0o755)
    compileall.compile_dir(os.path.join(tree if editable else site, "cais"), quiet=1)
    return script


def _once(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default="main")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--layouts", default="installed,editable")
    parser.add_argument("--dockerd", action="store_true", help="also time docker CLI → dockerd")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as pip installs: bytecode compiled once
    work = tempfile.mkdtemp(prefix="cais-cl-bench-", dir="/tmp")
    try:
        old_tree = os.path.join(work, "old")
        os.mkdir(old_tree)
        archive = subprocess.run(["git", "-C", HERE, "archive", args.old], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old_tree], input=archive, check=True)
        new_tree = os.path.join(work, "new")
        shutil.copytree(HERE, new_tree, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
        clis = {}
        for layout in args.layouts.split(","):
            for name, tree in (("old", old_tree), ("new", new_tree)):
                clis[f"{name} {layout}"] = _venv(os.path.join(work, f"venv-{name}-{layout}"), tree,
                                                 layout == "editable")
        with caisd() as d, (dockerd() if args.dockerd else contextlib.nullcontext()) as peer:
            env = {**os.environ, "CAIS_HOST": d.host}
            box = subprocess.run(["docker", "-H", d.host, "run", "-d", "busybox", "sleep", "3600"], check=True,
                                 capture_output=True, text=True).stdout.strip()
            commands = {"run --rm busybox true": ["run", "--rm", "busybox", "true"],
                        "exec C true": ["exec", box, "true"], "ps": ["ps"], "--version": ["--version"]}
            variants = {name: [cli] for name, cli in clis.items()}
            variants["docker CLI"] = ["docker", "-H", d.host]
            variants["python -c pass"] = [os.path.join(os.path.dirname(next(iter(clis.values()))), "python"),
                                          "-c", "pass"]
            if peer is not None:
                tar = os.path.join(work, "busybox.tar")
                subprocess.run(["docker", "-H", d.host, "save", "-o", tar, "busybox"], check=True)
                subprocess.run(["docker", "-H", peer.host, "load", "-i", tar], check=True, capture_output=True)
                peer_box = subprocess.run(["docker", "-H", peer.host, "run", "-d", "--network", "none", "busybox",
                                           "sleep", "3600"], check=True, capture_output=True, text=True).stdout.strip()
                variants["docker CLI → dockerd"] = ["docker", "-H", peer.host]

            def argv_of(name: str, what: str) -> list[str] | None:
                if name == "python -c pass":
                    return [] if what == "--version" else None
                if name.startswith("docker") and what == "--version":
                    return None
                if name == "docker CLI → dockerd":
                    return {"run --rm busybox true": ["run", "--rm", "--network", "none", "busybox", "true"],
                            "exec C true": ["exec", peer_box, "true"], "ps": ["ps"]}[what]
                return commands[what]

            samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for what in commands:
                for name, cli in variants.items():
                    if (argv := argv_of(name, what)) is not None:
                        _once([*cli, *argv], env)  # warm up
                        samples[(what, name)] = []
            for round_ in range(args.runs):
                for what in commands:
                    order = list(variants.items())
                    if round_ % 2:
                        order.reverse()
                    for name, cli in order:
                        if (argv := argv_of(name, what)) is not None:
                            samples[(what, name)].append(_once([*cli, *argv], env))
            subprocess.run(["docker", "-H", d.host, "rm", "-f", box], check=True, capture_output=True)
        print(f"{'command':26s} {'client':22s} {'wall ms':>8s} {'CPU ms':>8s}   (medians of {args.runs}, "
              f"old = {args.old})")
        for (what, name), values in samples.items():
            wall = statistics.median(v[0] for v in values) * 1000
            cpu = statistics.median(v[1] for v in values) * 1000
            print(f"{what:26s} {name:22s} {wall:8.1f} {cpu:8.1f}")
        print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
