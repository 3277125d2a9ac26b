"""Benchmark: a 10-step Dockerfile built cold, rebuilt with a warm cache, and rebuilt with one
source file changed — cais vs `docker build` (dockerd 20.10, classic builder) vs `buildah bud --layers`.

All three start from the same busybox image (made by cais's bootstrap, saved, loaded by the
peers). cais is timed three ways: in-process (the builder alone), as a fresh Python process
building in-process (interpreter start-up included), and `cais build` against caisd (the CLI
sends the context to POST /build, as `docker build` does to dockerd).

    .venv/bin/python bench/build.py [--runs N]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cais.image.archive import save  # noqa: E402
from cais.image.bootstrap import bootstrap_busybox  # noqa: E402
from cais.image.build.builder import Builder, BuildOptions  # noqa: E402
from cais.image.build.context import BuildContext  # noqa: E402
from cais.image.build.runner import Runner  # noqa: E402
from cais.image.store import ImageStore  # noqa: E402
from cais.storage import open_driver  # noqa: E402
from tests.build.daemon import caisd  # noqa: E402
from tests.peers import _unmount_under, dockerd  # noqa: E402

DOCKERFILE = """\
FROM busybox
ENV APP=/app
WORKDIR /app
COPY requirements.txt .
RUN echo installing > /app/installed
COPY src/ /app/src/
RUN ls -R /app/src > /app/listing
LABEL version=1
EXPOSE 8080
CMD ["sh"]
"""

SUBPROCESS_BUILD = """
import os, sys
from cais.image.store import ImageStore
from cais.storage import open_driver
from cais.image.build.service import run_cli
top = sys.argv[1]
store = ImageStore(os.path.join(top, "image"), open_driver(os.path.join(top, "storage")))
sys.exit(run_cli(store, os.path.join(top, "build"), sys.argv[2:], stdout=open(os.devnull, "w")))
"""


def make_context(root: str) -> None:
    os.makedirs(os.path.join(root, "src", "pkg"))
    files = {"Dockerfile": DOCKERFILE, "requirements.txt": "flask\n", "src/main.py": "print('hi')\n"}
    files.update({f"src/pkg/mod{i}.py": f"X = {i}\n" * 50 for i in range(30)})
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def change_file(root: str, n: int) -> None:
    with open(os.path.join(root, "src", "main.py"), "w") as f:
        f.write(f"print({n})\n")


def timed(fn: Callable[[], object], runs: int, before: Callable[[int], None] | None = None) -> float:
    times = []
    for i in range(runs):
        if before:
            before(i)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: {proc.stderr.decode()[-2000:]}")


def main() -> None:
    # An installed cais has its bytecode compiled: do not time the compiler at every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = args.runs
    top = tempfile.mkdtemp(prefix="cais-bench-build-", dir="/tmp")
    results: dict[str, dict[str, float]] = {}
    try:
        ctx = os.path.join(top, "ctx")
        make_context(ctx)
        cais_top = os.path.join(top, "cais")
        store = ImageStore(os.path.join(cais_top, "image"), open_driver(os.path.join(cais_top, "storage")))
        bootstrap_busybox(store)
        archive = io.BytesIO()
        save(store, ["busybox:latest"], archive)
        archive_path = os.path.join(top, "busybox.tar")
        with open(archive_path, "wb") as f:
            f.write(archive.getvalue())
        builder = Builder(store, Runner(os.path.join(cais_top, "build", "runtime")), os.path.join(cais_top, "build"))

        def cais_build(no_cache: bool = False) -> None:
            with BuildContext.open(ctx, tmp_dir=builder.tmp_dir) as c:
                builder.build(c, BuildOptions(tags=["bench:cais"], no_cache=no_cache), lambda e: None)

        def cais_process() -> None:
            run([sys.executable, "-c", SUBPROCESS_BUILD, cais_top, "-t", "bench:cais", ctx])

        results["cais (in-process)"] = {
            "cold": timed(lambda: cais_build(no_cache=True), max(2, runs // 2)),
            "warm": timed(cais_build, runs),
            "one file changed": timed(cais_build, runs, lambda i: change_file(ctx, 1000 + i)),
        }
        results["cais (new process)"] = {
            "warm": timed(cais_process, runs),
            "one file changed": timed(cais_process, runs, lambda i: change_file(ctx, 2000 + i)),
        }
        store.close()

        with caisd(archive.getvalue()) as d:
            cais_cli = os.path.join(os.path.dirname(sys.executable), "cais")

            def cais_daemon(*extra: str) -> None:
                run([cais_cli, "-H", d.host, "build", "-q", "-t", "bench:caisd", *extra, ctx])

            def docker_to_caisd(*extra: str) -> None:
                run(["docker", "-H", d.host, "build", "-q", "-t", "bench:caisd", *extra, ctx],
                    env=dict(os.environ, DOCKER_BUILDKIT="0"))

            results["cais build (caisd)"] = {
                "cold": timed(lambda: cais_daemon("--no-cache"), max(2, runs // 2)),
                "warm": timed(cais_daemon, runs),
                "one file changed": timed(cais_daemon, runs, lambda i: change_file(ctx, 5000 + i)),
            }
            results["docker build -> caisd"] = {
                "cold": timed(lambda: docker_to_caisd("--no-cache"), max(2, runs // 2)),
                "warm": timed(docker_to_caisd, runs),
                "one file changed": timed(docker_to_caisd, runs, lambda i: change_file(ctx, 6000 + i)),
            }

        with dockerd() as d:
            d.docker("load", input=archive.getvalue())
            env = dict(os.environ, DOCKER_BUILDKIT="0")

            def docker_build(*extra: str) -> None:
                run(["docker", "-H", d.host, "build", "-q", "-t", "bench:docker", *extra, ctx], env=env)

            results["docker build"] = {
                "cold": timed(lambda: docker_build("--no-cache"), max(2, runs // 2)),
                "warm": timed(docker_build, runs),
                "one file changed": timed(docker_build, runs, lambda i: change_file(ctx, 3000 + i)),
            }

        if shutil.which("buildah"):
            broot = os.path.join(top, "buildah")
            base = ["buildah", "--root", os.path.join(broot, "root"), "--runroot", os.path.join(broot, "run"),
                    "--storage-driver", "overlay"]
            run([*base, "pull", "-q", f"docker-archive:{archive_path}"])
            run([*base, "tag", "localhost/busybox:latest", "busybox:latest"])

            def buildah_build(*extra: str) -> None:
                run([*base, "bud", "--layers", "-q", "--pull=never", "--isolation", "chroot", "-t", "bench:buildah",
                     *extra, ctx])

            try:
                results["buildah bud --layers"] = {
                    "cold": timed(lambda: buildah_build("--no-cache"), max(2, runs // 2)),
                    "warm": timed(buildah_build, runs),
                    "one file changed": timed(buildah_build, runs, lambda i: change_file(ctx, 4000 + i)),
                }
            finally:
                subprocess.run([*base, "rm", "--all"], capture_output=True)
                subprocess.run([*base, "rmi", "--all", "--force"], capture_output=True)
                _unmount_under(broot)
    finally:
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)

    cases = ("cold", "warm", "one file changed")
    print(f"{'median seconds':24}" + "".join(f"{c:>18}" for c in cases))
    for name, row in results.items():
        print(f"{name:24}" + "".join(f"{row[c]:>18.3f}" if c in row else f"{'-':>18}" for c in cases))
    for ours_name, peer_name in (("cais (in-process)", "docker build"), ("cais (in-process)", "buildah bud --layers"),
                                 ("docker build -> caisd", "docker build"), ("cais build (caisd)", "docker build")):
        ours, peer = results.get(ours_name), results.get(peer_name)
        if ours and peer:
            print(f"{peer_name} / {ours_name}: " + ", ".join(f"{c} x{peer[c] / ours[c]:.1f}" for c in cases))


if __name__ == "__main__":
    main()
