"""Unpack a generated ~200 MB multi-layer image with cais, `umoci unpack` and dockerd's `docker load`.

The image (5 gzip layers: many small files, mid-size files, a few large ones, then two update
layers with whiteouts) is generated once, deterministically, as an OCI layout (for umoci) and as a
docker-archive holding the same gzip blobs (for docker load). Every run unpacks into freshly
named directories. Throughput is uncompressed layer bytes per second of wall time; medians of
RUNS runs after one warm-up; the tools take turns within each run.

    .venv/bin/python bench/unpack.py [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.layers import MTIME, layer_tar, payload  # noqa: E402
from cais.storage import open_driver  # noqa: E402

DOCKER = "docker load (dockerd 20.10, overlay2)"


def _tree(rng: random.Random, top: str, dirs: int, files: int, size: tuple[int, int]) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = [(top, None)]
    for d in range(dirs):
        out.append((f"{top}/d{d:03}", None))
        for f in range(files):
            out.append((f"{top}/d{d:03}/f{f:04}", payload(rng, rng.randint(*size))))
    return out


def generate(where: str) -> tuple[list[bytes], int]:
    """Write the image as an OCI layout (where/oci) and a docker-archive (where/docker.tar);
    returns the gzip layer blobs and the total uncompressed size."""
    rng = random.Random(42)
    tars = [
        layer_tar(_tree(rng, "usr", 40, 500, (200, 6000))),           # ~20k small files, ~62 MB
        layer_tar(_tree(rng, "opt", 20, 50, (20_000, 180_000))),      # 1000 mid-size files, ~100 MB
        layer_tar([("data", None)] + [(f"data/blob{i}", payload(rng, 12 << 20)) for i in range(3)]),  # 36 MB
        layer_tar([("usr/d000/.wh.f0000", b""), ("usr/d001/.wh..wh..opq", b""), ("etc", None),
                ("etc/config", b"x=1\n")]),
        layer_tar([("opt/d000/.wh.f0001", b""), ("srv", None)] + [(f"srv/s{i}", payload(rng, 4096)) for i in range(200)]),
    ]
    blobs = [gzip.compress(t, compresslevel=6, mtime=0) for t in tars]
    total = sum(len(t) for t in tars)
    diff_ids = [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()

    oci = os.path.join(where, "oci")
    os.makedirs(os.path.join(oci, "blobs", "sha256"))

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(oci, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return f"sha256:{digest}"

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(b),
                    "size": len(b)} for b in blobs]}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
    with open(os.path.join(oci, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(oci, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    with tarfile.open(os.path.join(where, "docker.tar"), "w") as t:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            t.addfile(info, io.BytesIO(data))
        layer_names = []
        for i, blob in enumerate(blobs):
            layer_names.append(f"l{i}/layer.tar")
            add(layer_names[-1], blob)
        add("config.json", config)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["cais-st-bench:latest"],
                                          "Layers": layer_names}]).encode())
    return blobs, total


def run_cais(blob_paths: list[str], scratch: str) -> float:
    root = tempfile.mkdtemp(prefix="cais-st-bench-", dir=scratch)
    driver = open_driver(root, "overlay")
    start = time.perf_counter()
    parent = None
    for i, path in enumerate(blob_paths):
        with open(path, "rb") as f:
            driver.apply_diff(f"layer{i}", parent, f)
        parent = f"layer{i}"
    return time.perf_counter() - start


def run_umoci(oci: str, scratch: str) -> float:
    bundle = os.path.join(tempfile.mkdtemp(prefix="cais-st-bench-umoci-", dir=scratch), "bundle")
    start = time.perf_counter()
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:bench", bundle], check=True, capture_output=True)
    return time.perf_counter() - start


def run_docker(docker, archive: str) -> float:
    start = time.perf_counter()
    docker.docker("load", "-q", "-i", archive, timeout=600)
    elapsed = time.perf_counter() - start
    docker.docker("rmi", "cais-st-bench:latest", timeout=120)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cais-st-bench-", dir="/var/tmp")
    try:
        blobs, total = generate(work)
        mb = total / 1e6
        print(f"image: {len(blobs)} gzip layers, {sum(map(len, blobs)) / 1e6:.0f} MB compressed, "
              f"{mb:.0f} MB uncompressed")
        oci = os.path.join(work, "oci")
        blob_paths = [os.path.join(oci, "blobs", "sha256", hashlib.sha256(b).hexdigest()) for b in blobs]
        scratch = os.path.join(work, "scratch")
        os.mkdir(scratch)
        names = ["cais (overlay)", "umoci unpack"] + ([] if args.skip_docker else [DOCKER])
        results: dict[str, list[float]] = {name: [] for name in names}
        with contextlib.ExitStack() as stack:
            docker = None
            if not args.skip_docker:
                from tests.peers import dockerd
                docker = stack.enter_context(dockerd())
            for _ in range(args.runs + 1):  # interleaved, so that a busy moment hits every tool alike
                results["cais (overlay)"].append(run_cais(blob_paths, scratch))
                results["umoci unpack"].append(run_umoci(oci, scratch))
                if docker is not None:
                    results[DOCKER].append(run_docker(docker, os.path.join(work, "docker.tar")))
        medians = {name: statistics.median(times[1:]) for name, times in results.items()}
        ours = medians["cais (overlay)"]
        print("\n| tool | median s | MB/s | time vs cais |\n| --- | --- | --- | --- |")
        for name, t in medians.items():
            print(f"| {name} | {t:.2f} | {mb / t:.0f} | {t / ours:.2f}x |")
    finally:
        subprocess.run(["umount", "-R", "-l", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
