"""Build small OCI image layouts for the registry tests and benchmarks (no registry needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

from cais.image.platform import host_platform


def tar_directory(root: str) -> bytes:
    """An uncompressed, reproducible tar of a directory tree."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                info = tar.gettarinfo(path, os.path.relpath(path, root))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def tar_files(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(layout: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    with open(path, "wb") as f:
        f.write(data)
    return digest


def _image(layout: str, layer_tars: list[bytes], architecture: str, compresslevel: int) -> dict:
    """Write one image's blobs; return the descriptor of its manifest."""
    layers, diff_ids = [], []
    for tar in layer_tars:
        compressed = gzip.compress(tar, compresslevel=compresslevel, mtime=0)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": _blob(layout, compressed), "size": len(compressed)})
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(layout, config), "size": len(config)},
        "layers": layers}).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _blob(layout, manifest),
            "size": len(manifest), "platform": {"architecture": architecture, "os": "linux"}}


def _write_index(layout: str, top: dict, tag: str) -> None:
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entry = {k: v for k, v in top.items() if k != "platform"}
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [entry]}, f)


def write_oci_layout(layout: str, layer_tars: list[bytes], tag: str = "latest", compresslevel: int = 1) -> str:
    """Write an OCI image layout with one image of these (uncompressed) layer tars; return its manifest digest."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    desc = _image(layout, layer_tars, host_platform().architecture, compresslevel)
    _write_index(layout, desc, tag)
    return desc["digest"]


def write_oci_multiarch(layout: str, images: dict[str, list[bytes]], tag: str = "latest") -> tuple[str, dict[str, str]]:
    """An OCI layout whose tag names an image index of one image per architecture.

    Returns the index digest and {architecture: manifest digest}.
    """
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    entries = [_image(layout, tars, arch, 1) for arch, tars in images.items()]
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    digest = _blob(layout, index)
    _write_index(layout, {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                          "size": len(index)}, tag)
    return digest, {e["platform"]["architecture"]: e["digest"] for e in entries}
