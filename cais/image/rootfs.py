"""`import` a rootfs tarball as a one-layer image; `export` an image's flattened rootfs as a tar.

Both go through the normal paths: an import is a blob in the content store plus a generated
config and manifest, registered like any pulled image (so a hostile tarball meets the storage
driver's checks); an export mounts the image read-only through the driver and tars the tree.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tarfile
import time
from typing import Any, BinaryIO

from cais.image import layerio
from cais.image.config import ConfigError, apply_changes
from cais.image.filters import format_time
from cais.image.manifest import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    dumps,
)
from cais.image.platform import Platform, host_platform
from cais.image.store import ImageStore, InvalidImage
from cais.storage.errors import StorageError

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def make_image(store: ImageStore, layers: list[tuple[str, str, int]], config: dict[str, Any],
               reference: str | None = None, parent: str = "", platform: Platform | None = None) -> str:
    """Register an image from layer blobs already stored: (blob digest, diff_id, size) each.

    `config` is the full image config minus rootfs (added here). Returns the image ID.
    """
    p = platform or host_platform()
    cfg = {"architecture": p.architecture, "os": p.os, **config,
           "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]}}
    if p.variant and "variant" not in config:
        cfg["variant"] = p.variant
    raw = dumps(cfg)
    with store.hold():
        config_digest = store.content.put(raw)
        descs = []
        for blob, _, size in layers:
            try:
                descs.append(Descriptor(layerio.layer_media_type(store.content, blob), blob, size))
            except StorageError as e:
                raise InvalidImage(str(e)) from None
        man = Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, config_digest, len(raw)), tuple(descs))
        digest = store.content.put(man.to_bytes())
        return store.register(digest, reference, repo_digest=False, parent=parent)


def import_rootfs(store: ImageStore, stream: BinaryIO, reference: str | None = None, changes: list[str] | None = None,
                  message: str = "", source: str = "-", platform: Platform | None = None,
                  created: float | None = None) -> str:
    """`docker import`: a (possibly gzip/zstd compressed) rootfs tarball → a one-layer image ID."""
    try:
        container_config = apply_changes({}, changes or [])
    except ConfigError as e:
        raise InvalidImage(str(e)) from None
    with store.hold():
        blob = store.content.ingest(stream)
        size = store.content.size(blob)
        try:
            with layerio.uncompressed(store.content, blob, store.max_layer_size) as reader:
                reader.drain()
        except (OSError, EOFError, ValueError, StorageError) as e:
            store.content.delete(blob)
            raise InvalidImage(f"invalid rootfs tarball: {e}") from None
        when = format_time(time.time() if created is None else created)
        config = {"created": when, "config": container_config,
                  "history": [{"created": when, "comment": message or f"Imported from {source}"}]}
        if message:
            config["comment"] = message
        return make_image(store, [(blob, reader.digest(), size)], config, reference, platform=platform)


def export_image(store: ImageStore, name: str, out: BinaryIO) -> None:
    """Write the flattened root filesystem of image `name` as a tar to `out`."""
    layers = store.layers_of(name)
    rw = "cais-export-" + secrets.token_hex(6)
    store.driver.create_rw(rw, layers[-1]["ChainID"].split(":", 1)[1] if layers else None)
    try:
        path = store.driver.mount(rw)
        try:
            tar_tree(path, out)
        finally:
            store.driver.unmount(rw)
    finally:
        store.driver.remove_rw(rw)


def tar_tree(root: str, out: BinaryIO, mtime: int | None = None) -> None:
    """Tar a directory tree (sorted; owners, modes, links, devices, xattrs kept). With `mtime`,
    every entry gets that time and the output is reproducible."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        inodes: dict[tuple[int, int], str] = {}
        for rel in _walk(root):
            full = os.path.join(root, rel) if rel else root
            st = os.lstat(full)
            info = tarfile.TarInfo(rel + "/" if stat.S_ISDIR(st.st_mode) and rel else rel or ".")
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid, info.uname, info.gname = st.st_uid, st.st_gid, "", ""
            info.mtime = int(st.st_mtime) if mtime is None else mtime
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in inodes:
                info.type, info.linkname = tarfile.LNKTYPE, inodes[key]
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                inodes.setdefault(key, rel)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                continue  # sockets are not archived
            xattrs = _xattrs(full)
            if xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
            if info.type == tarfile.REGTYPE:
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _walk(root: str) -> list[str]:
    out = [""]

    def visit(rel: str) -> None:
        with os.scandir(os.path.join(root, rel)) as it:
            names = sorted(e.name for e in it)
        for n in names:
            child = f"{rel}/{n}" if rel else n
            out.append(child)
            if stat.S_ISDIR(os.lstat(os.path.join(root, child)).st_mode):
                visit(child)
    visit("")
    return out


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for key in os.listxattr(path, follow_symlinks=False):
            with contextlib.suppress(OSError):
                out[key] = os.getxattr(path, key, follow_symlinks=False).decode("utf-8", "surrogateescape")
    return out

