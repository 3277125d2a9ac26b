"""Pull a generated ~200 MB, 5-layer image from a loopback registry: cais vs `docker pull` vs `skopeo copy`.

    .venv/bin/python bench/pull.py [--runs 5] [--layer-mb 40]

The CNCF registry (docker-registry) serves an image of five incompressible layers. Each run starts
from an empty destination: a fresh cais content store; `docker rmi` before `docker pull` (a
private dockerd from tests.peers); a fresh `dir:` for `skopeo copy`. What each one does differs:
cais and skopeo fetch and verify the blobs; docker also unpacks the layers into overlay2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cais.image.content import ContentStore  # noqa: E402
from cais.image.reference import parse  # noqa: E402
from cais.registry.pull import pull  # noqa: E402
from tests.peers import dockerd  # noqa: E402
from tests.registry.conftest import distribution_registry  # noqa: E402
from tests.registry.images import tar_files, write_oci_layout  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer-mb", type=int, default=40)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="cais-bench-pull-")
    try:
        layout = os.path.join(top, "image")
        layers = [tar_files({f"layer{i}/data": os.urandom(args.layer_mb << 20)}) for i in range(5)]
        write_oci_layout(layout, layers)
        del layers
        size = sum(os.path.getsize(os.path.join(layout, "blobs", "sha256", f))
                   for f in os.listdir(os.path.join(layout, "blobs", "sha256")))
        with distribution_registry() as reg, dockerd() as docker:
            name = f"{reg.host}/cais/bench:latest"
            subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest",
                            f"docker://{name}"], check=True, capture_output=True)
            results: dict[str, list[float]] = {"cais": [], "docker pull": [], "skopeo copy (dir:)": []}
            for run in range(args.runs):
                store_dir = os.path.join(top, f"cais-{run}")

                def cais_pull(store_dir: str = store_dir) -> None:
                    asyncio.run(pull(parse(name), ContentStore(store_dir), hosts=reg.hosts()))
                results["cais"].append(timed(cais_pull))
                shutil.rmtree(store_dir)

                docker.docker("rmi", "-f", name, check=False)
                results["docker pull"].append(timed(lambda: docker.docker("pull", "-q", name, timeout=600)))

                out = os.path.join(top, f"skopeo-{run}")
                results["skopeo copy (dir:)"].append(timed(lambda out=out: subprocess.run(
                    ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{name}", f"dir:{out}"],
                    check=True, capture_output=True)))
                shutil.rmtree(out)
                print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), file=sys.stderr)
        base = statistics.median(results["cais"])
        print(f"\nImage: 5 layers, {size / 1e6:.0f} MB compressed, from docker-registry on loopback; "
              f"{args.runs} runs, medians.\n")
        print("| tool | median (s) | MB/s | time vs cais |")
        print("| --- | --- | --- | --- |")
        for tool, times in results.items():
            median = statistics.median(times)
            print(f"| {tool} | {median:.2f} | {size / 1e6 / median:.0f} | {median / base:.2f}x |")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
