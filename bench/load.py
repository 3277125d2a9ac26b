"""`cais load` vs dockerd's `docker load` of the same generated multi-layer docker-archive.

End to end: the archive is read, its blobs stored, the layers unpacked and verified, the image
registered. The image (4 gzip layers: many small files, mid-size files, a few large ones, an
update layer with whiteouts) is generated once, deterministically. Throughput is uncompressed
layer bytes per second of wall time; medians of RUNS runs, each into a fresh store (cais) or
after `docker rmi` + prune (dockerd on its own temporary root).

    .venv/bin/python bench/load.py [--runs N] [--size-mb MB]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.layers import MTIME, layer_tar, payload  # noqa: E402
from cais.image.archive import load  # noqa: E402
from cais.image.store import ImageStore  # noqa: E402
from cais.storage import open_driver  # noqa: E402


def make_archive(path: str, total_mb: int) -> int:
    """Write the docker-archive; return the uncompressed bytes of its layers."""
    rng = random.Random(42)
    budget = total_mb << 20
    small = [("small/", None)] + [(f"small/d{i // 200}/f{i}", payload(rng, rng.randint(200, 8000)))
                                  for i in range(budget // 3 // 4000)]
    small[1:1] = [(f"small/d{i}/", None) for i in range(len(small) // 200 + 1)]
    mid = [("mid/", None)] + [(f"mid/f{i}", payload(rng, 256 << 10)) for i in range(budget // 3 // (256 << 10))]
    large = [("large/", None)] + [(f"large/f{i}", payload(rng, 16 << 20)) for i in range(max(1, budget // 3 // (16 << 20)))]
    update = [("small/d0/.wh.f0", b""), ("mid/.wh..wh..opq", b""), ("mid/new", payload(rng, 1 << 20))]
    layers = [layer_tar(e) for e in (small, mid, large, update)]
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    with tarfile.open(path, "w") as out:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            out.addfile(info, io.BytesIO(data))
        names = []
        for i, layer in enumerate(layers):
            names.append(f"l{i}/layer.tar")
            add(names[-1], gzip.compress(layer, compresslevel=1, mtime=0))
        add("config.json", config)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["bench/load:1"],
                                          "Layers": names}]).encode())
    return sum(len(x) for x in layers)


def run_cais(archive: str, top: str, n: int) -> float:
    root = os.path.join(top, f"cais-{n}")
    store = ImageStore(os.path.join(root, "image"), open_driver(os.path.join(root, "storage")))
    try:
        start = time.perf_counter()
        with open(archive, "rb") as f:
            load(store, f)
        return time.perf_counter() - start
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def run_docker(archive: str, peer) -> float:
    with open(archive, "rb") as f:
        data = f.read()
    start = time.perf_counter()
    peer.docker("load", input=data, timeout=600)
    elapsed = time.perf_counter() - start
    peer.docker("rmi", "bench/load:1", timeout=300)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="cais-bench-load-")
    try:
        archive = os.path.join(top, "image.tar")
        size = make_archive(archive, args.size_mb)
        mb = size / (1 << 20)
        print(f"archive: {os.path.getsize(archive) / (1 << 20):.0f} MB compressed, {mb:.0f} MB of layers")
        run_cais(archive, top, -1)  # warm-up
        cais = statistics.median(run_cais(archive, top, n) for n in range(args.runs))
        print(f"cais load:   {cais:6.2f} s  {mb / cais:7.1f} MB/s")
        from tests.peers import dockerd
        with dockerd() as peer:
            run_docker(archive, peer)
            docker = statistics.median(run_docker(archive, peer) for _ in range(args.runs))
        print(f"docker load: {docker:6.2f} s  {mb / docker:7.1f} MB/s")
        print(f"cais is {docker / cais:.2f}x docker load")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
