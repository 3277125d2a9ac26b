"""Small images made by hand in a content store: tar layers, configs, manifests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import zstandard

from cais.image.content import digest_bytes
from cais.image.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_LAYER, OCI_LAYER_ZSTD
from cais.image.store import ImageStore


def tar_layer(files: dict[str, bytes | str | None], mtime: int = 1_600_000_000) -> bytes:
    """name -> bytes (file), str (symlink target), None (directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if value is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                tar.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def compress(data: bytes, how: str) -> tuple[bytes, str]:
    if how == "gzip":
        return gzip.compress(data, mtime=0), DOCKER_LAYER_GZIP
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data), OCI_LAYER_ZSTD
    return data, OCI_LAYER


def put_image(store: ImageStore, layers: list[bytes], compression: str = "gzip", labels: dict | None = None,
              created: str = "2024-01-02T03:04:05.123456789Z", diff_ids: list[str] | None = None,
              skip_blobs: tuple[int, ...] = (), extra_config: dict | None = None) -> str:
    """Put config, layer blobs and a Docker v2 manifest in the content store; the manifest digest."""
    descs = []
    for i, layer in enumerate(layers):
        blob, media_type = compress(layer, compression)
        digest = digest_bytes(blob)
        if i not in skip_blobs:
            store.content.put(blob)
        descs.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
    config = {"architecture": "amd64", "os": "linux", "created": created,
              "config": {"Cmd": ["sh"], "Labels": labels or None},
              "rootfs": {"type": "layers", "diff_ids": diff_ids or [digest_bytes(x) for x in layers]},
              "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
              **(extra_config or {})}
    raw = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "digest": store.content.put(raw), "size": len(raw)},
                "layers": descs}
    return store.content.put(json.dumps(manifest).encode())
