"""`save` and `load`: images to and from docker-archive tarballs and OCI image layouts.

`save(format="docker")` writes what `docker save` 25+ writes — an OCI layout (``oci-layout``,
``index.json``, ``blobs/``) with uncompressed layers, plus docker's ``manifest.json`` and
``repositories`` — so both old (20.10) and new `docker load` and OCI tools read it.
`save(format="oci")` writes a plain OCI layout with the original blobs and manifests (digests,
hence repo digests, preserved).

`load` reads either kind (and the layer-directory layout of docker 20.10's `docker save`) in a
single pass: every file goes straight into the content store, hashed on the way; then
manifest.json or index.json says what to register. The archive's paths are only names: nothing
from it is ever written to the file system outside the content store.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import tarfile
import time
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from cais.image import layerio
from cais.image.config import chain_ids, diff_ids, parse_config
from cais.image.content import ContentError, DigestMismatch, parse_digest
from cais.image.manifest import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    ManifestError,
    dumps,
    parse_manifest,
)
from cais.image.reference import Reference, ReferenceError, parse, parse_normalized
from cais.image.store import ImageError, ImageStore, InvalidImage
from cais.storage.compression import ZSTD_MAGIC
from cais.storage.errors import StorageError

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_METADATA_FILE = 8 << 20


class ArchiveError(InvalidImage):
    """A malformed archive or layout."""


# ---------------------------------------------------------------------------------------- save
def save(store: ImageStore, names: list[str], out: BinaryIO, format: str = "docker") -> None:
    """Write the images `names` (references or IDs) as one tar stream to `out`."""
    if format not in ("docker", "oci"):
        raise ImageError(f"unknown archive format {format!r} (docker or oci)")
    with store.hold():
        _save(store, names, out, format)


def _save(store: ImageStore, names: list[str], out: BinaryIO, format: str) -> None:
    images: dict[str, list[Reference]] = {}
    for name in names:
        for image_id, tags in _save_targets(store, name):
            known = images.setdefault(image_id, [])
            known += [t for t in tags if t not in known]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        writer.add_bytes("oci-layout", OCI_LAYOUT)
        index: list[dict[str, Any]] = []
        docker_manifest: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for image_id, tags in images.items():
            if format == "docker":
                desc, entry = _save_docker_image(store, writer, image_id, tags)
                docker_manifest.append(entry)
                for t in tags:  # legacy file: repository -> tag -> top layer
                    top = entry["Layers"][-1].rsplit("/", 1)[-1] if entry["Layers"] else ""
                    repositories.setdefault(t.familiar_name(), {})[t.tag or "latest"] = top
            else:
                desc = _save_oci_image(store, writer, image_id)
            for t in tags or [None]:
                ann = dict(desc.annotations)
                if t is not None:
                    ann.update({CONTAINERD_NAME: str(t), REF_NAME: t.tag or "latest"})
                index.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations=ann).to_dict())
        writer.add_bytes("index.json", dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}))
        if format == "docker":
            writer.add_bytes("manifest.json", json.dumps(docker_manifest).encode())
            writer.add_bytes("repositories", json.dumps(repositories).encode())


def _save_targets(store: ImageStore, name: str) -> list[tuple[str, list[Reference]]]:
    """What `docker save NAME` writes: an ID gives the image untagged, ``repo:tag`` that tag,
    a bare repository every tag it has."""
    bare = name.removeprefix("sha256:")
    if bare and all(c in "0123456789abcdef" for c in bare):
        with contextlib.suppress(ImageError):
            image_id = store.resolve(name)
            if image_id[7:].startswith(bare):
                return [(image_id, [])]
    try:
        ref = parse_normalized(name)
    except ReferenceError as e:
        raise InvalidImage(str(e)) from None
    if not ref.is_name_only:
        image_id = store.resolve(name)
        return [(image_id, [Reference(ref.domain, ref.path, ref.tag)] if ref.tag else [])]
    out: dict[str, list[Reference]] = {}
    for r, iid, kind in store.meta.all_refs():
        tagged = parse(r)
        if kind == "tag" and tagged.name == ref.name:
            out.setdefault(iid, []).append(tagged)
    if not out:
        store.resolve(name)  # raises docker's "No such image"
    return list(out.items())


class _TarWriter:
    """Adds files once each (blobs shared by several images are written once)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.written: set[str] = set()
        self.mtime = int(time.time())

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, self.mtime
        return info

    def add_dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.written:
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.mtime
                self.tar.addfile(info)
                self.written.add(d)

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self.written:
            return
        self.add_dirs(name)
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        self.written.add(name)

    def add_stream(self, name: str, size: int, stream: IO[bytes]) -> None:
        if name in self.written:
            return
        self.add_dirs(name)
        self.tar.addfile(self._info(name, size), stream)
        self.written.add(name)


def _blob_path(digest: str) -> str:
    algorithm, hexpart = parse_digest(digest)
    return f"blobs/{algorithm}/{hexpart}"


def _image_manifest(store: ImageStore, image_id: str) -> tuple[str, Manifest]:
    """Kept for callers written before `ImageStore.manifest`; use that."""
    return store.manifest(image_id)


def _save_docker_image(store: ImageStore, writer: _TarWriter, image_id: str,
                       tags: list[Reference]) -> tuple[Descriptor, dict[str, Any]]:
    """Config + uncompressed layers (blob digest = diff_id) + a fresh OCI manifest for them."""
    _, man = store.manifest(image_id)
    config = store.content.read(image_id)
    writer.add_bytes(_blob_path(image_id), config)
    diffs = diff_ids(parse_config(config))
    chains = chain_ids(diffs)
    layers = []
    for blob, diff_id, chain in zip(man.layers, diffs, chains, strict=True):
        row = store.meta.layer(chain)
        if row is None:
            raise ImageError(f"layer {chain} of image {image_id} is missing")
        path = _blob_path(diff_id)
        if path not in writer.written:
            with layerio.uncompressed(store.content, blob.digest) as reader:
                writer.add_stream(path, row.diff_size, reader)  # type: ignore[arg-type]
                if reader.digest() != diff_id:
                    raise ImageError(f"layer blob {blob.digest} no longer matches its diff ID {diff_id}")
        layers.append(Descriptor(OCI_LAYER, diff_id, row.diff_size))
    manifest = Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, image_id, len(config)), tuple(layers))
    data = manifest.to_bytes()
    digest = store.content.put(data)
    with store.meta.tx() as db:  # keep the generated manifest: saving again gives the same bytes
        db.execute("INSERT OR IGNORE INTO image_blobs VALUES (?,?)", (image_id, digest))
    writer.add_bytes(_blob_path(digest), data)
    entry = {"Config": _blob_path(image_id), "RepoTags": [t.familiar() for t in tags],
             "Layers": [_blob_path(d) for d in diffs]}
    return Descriptor(OCI_MANIFEST, digest, len(data)), entry


def _save_oci_image(store: ImageStore, writer: _TarWriter, image_id: str) -> Descriptor:
    digest, man = store.manifest(image_id)
    for desc in (man.config, *man.layers):
        with store.content.open(desc.digest) as f:
            writer.add_stream(_blob_path(desc.digest), desc.size, f)
    data = store.content.read(digest)
    writer.add_bytes(_blob_path(digest), data)
    return Descriptor(man.media_type, digest, len(data))


# ---------------------------------------------------------------------------------------- load
class _Files:
    """An archive's regular files, by normalized path, as blobs in the content store."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.files: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.added: set[str] = set()

    def add(self, name: str, stream: IO[bytes], size: int) -> None:
        expected = None
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":  # an OCI blob: its name is its digest
            with contextlib.suppress(ContentError):
                parse_digest(f"{parts[1]}:{parts[2]}")
                expected = f"{parts[1]}:{parts[2]}"
        present = expected is not None and self.store.content.has(expected)
        if size > self.store.max_layer_size:
            raise ArchiveError(f"archive: {name} is {size} bytes, over the limit of {self.store.max_layer_size}")
        try:
            digest = self.store.content.ingest(_Guarded(stream, self.store.content.root), expected, size)
        except DigestMismatch:
            raise ArchiveError(f"archive: {name} does not match its digest (corrupt archive)") from None
        except ContentError as e:
            raise ArchiveError(f"archive: {name}: {e}") from None
        if not present:
            self.added.add(digest)
        self.files[name] = digest

    def digest(self, name: str) -> str:
        name = _clean(name)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise ArchiveError(f"archive: {name} is missing")

    def read(self, name: str, limit: int = MAX_METADATA_FILE) -> bytes:
        digest = self.digest(name)
        if self.store.content.size(digest) > limit:
            raise ArchiveError(f"archive: {name} is too large")
        return self.store.content.read(digest)

    def cleanup(self) -> None:
        """Delete the blobs this load added that no image ended up using (VERSION, json, …)."""
        for digest in self.added:
            if not self.store.meta.q("SELECT 1 FROM image_blobs WHERE digest = ?", digest):
                self.store.content.delete(digest)


class _Guarded:
    """A reader that stops before the content store's file system runs out of space (a
    compressed archive can expand far beyond its own size)."""

    RESERVE = 256 << 20
    CHECK_EVERY = 64 << 20

    def __init__(self, stream: IO[bytes], root: str) -> None:
        self._stream, self._root, self._since = stream, root, self.CHECK_EVERY

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._since += len(data)
        if self._since >= self.CHECK_EVERY:
            self._since = 0
            st = os.statvfs(self._root)
            if st.f_bavail * st.f_frsize < self.RESERVE:
                raise ArchiveError(f"stopping load: less than {self.RESERVE >> 20} MiB free under {self._root}")
        return data


def _clean(name: str) -> str:
    """An archive path as a key: normalized, relative, never above the archive's root."""
    return posixpath.normpath("/" + name).lstrip("/")


def load(store: ImageStore, stream: BinaryIO) -> list[str]:
    """`docker load`: a docker-archive or OCI-layout tar (optionally gzip/bzip2/xz/zstd compressed).

    Returns docker's messages: ``Loaded image: busybox:latest`` / ``Loaded image ID: sha256:…``.
    """
    from zstandard import ZstdError

    with store.hold():
        files = _Files(store)
        try:
            try:
                with _zstd_aware(stream) as plain, tarfile.open(fileobj=plain, mode="r|*") as tar:
                    for member in tar:
                        name = _clean(member.name)
                        if member.isreg():
                            files.add(name, tar.extractfile(member), member.size)  # type: ignore[arg-type]
                        elif member.issym():
                            files.links[name] = _clean(posixpath.join(posixpath.dirname(name), member.linkname))
                        elif member.islnk():
                            files.links[name] = _clean(member.linkname)
            except (tarfile.TarError, EOFError, OSError, ValueError, ZstdError) as e:
                raise ArchiveError(f"invalid archive: {e}") from None
            return _register_files(store, files)
        finally:
            files.cleanup()


@contextlib.contextmanager
def _zstd_aware(stream: BinaryIO) -> Iterator[IO[bytes]]:
    """tarfile reads gzip, bzip2 and xz archives itself; add zstd, which `docker load` also takes."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    if not buffered.peek(4)[:4].startswith(ZSTD_MAGIC):  # type: ignore[union-attr]
        yield buffered
        return
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True, closefd=False) as reader:
        yield reader  # type: ignore[misc]


def load_layout(store: ImageStore, path: str) -> list[str]:
    """Load an OCI image layout directory (umoci, skopeo ``oci:DIR``, buildah)."""
    if not os.path.isfile(os.path.join(path, "index.json")):
        raise ArchiveError(f"{path} is not an OCI image layout (no index.json)")
    with store.hold():
        files = _Files(store)
        try:
            for name in ("oci-layout", "index.json"):
                with contextlib.suppress(FileNotFoundError), open(os.path.join(path, name), "rb") as f:
                    files.add(name, f, os.fstat(f.fileno()).st_size)
            for top, _, names in os.walk(os.path.join(path, "blobs")):
                for n in sorted(names):
                    full = os.path.join(top, n)
                    if os.path.islink(full) or not os.path.isfile(full):
                        continue
                    with open(full, "rb") as f:
                        files.add(os.path.relpath(full, path), f, os.fstat(f.fileno()).st_size)
            return _register_files(store, files)
        finally:
            files.cleanup()


def _register_files(store: ImageStore, files: _Files) -> list[str]:
    if "manifest.json" in files.files or "manifest.json" in files.links:
        return _load_docker(store, files)
    if "index.json" in files.files:
        return _load_oci(store, files)
    raise ArchiveError("invalid archive: no manifest.json or index.json (neither docker save output nor an OCI layout)")


def _load_docker(store: ImageStore, files: _Files) -> list[str]:
    try:
        entries = json.loads(files.read("manifest.json"))
    except ValueError as e:
        raise ArchiveError(f"archive: manifest.json is not valid JSON: {e}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ArchiveError("archive: manifest.json must be a list of objects")
    plans = []
    for n, entry in enumerate(entries):  # check everything before registering anything
        config_path, layer_paths, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags") or []
        if not isinstance(config_path, str) or not isinstance(layer_paths, list) or not isinstance(tags, list):
            raise ArchiveError(f"archive: manifest.json entry {n} needs Config, Layers and RepoTags")
        if entry.get("LayerSources"):
            raise ArchiveError("archive: foreign layers (LayerSources) are not supported")
        config_digest = files.digest(config_path)
        config = store.content.read(config_digest)
        diffs = diff_ids(parse_config(config))
        if len(diffs) != len(layer_paths):
            raise ArchiveError(f"archive: image {config_digest} has {len(layer_paths)} layers but its config "
                               f"lists {len(diffs)}")
        layers = []
        for i, (path, diff_id) in enumerate(zip(layer_paths, diffs, strict=True)):
            digest = files.digest(path)
            try:
                media_type = layerio.layer_media_type(store.content, digest)
            except StorageError as e:
                raise ArchiveError(f"archive: {path}: {e}") from None
            if media_type == OCI_LAYER and digest != diff_id:
                raise ArchiveError(f"invalid diffID for layer {i}: expected {diff_id!r}, got {digest!r}")
            layers.append(Descriptor(media_type, digest, store.content.size(digest)))
        refs = []
        for t in tags:
            try:
                refs.append(parse(t))
            except ReferenceError as e:
                raise ArchiveError(f"archive: invalid tag {t!r}: {e}") from None
        man = Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, config_digest, len(config)), tuple(layers))
        plans.append((man, refs))
    messages: list[str] = []
    for man, refs in plans:
        digest = store.content.put(man.to_bytes())
        messages += _renames(store, refs, man.config.digest)
        image_id = store.register(digest, refs[0] if refs else None, repo_digest=False)
        for ref in refs[1:]:
            store.tag(image_id, str(ref))
        messages += [f"Loaded image: {r.familiar()}" for r in refs] or [f"Loaded image ID: {image_id}"]
    return messages


def _renames(store: ImageStore, refs: list[Reference], image_id: str) -> list[str]:
    """docker's notice when a loaded tag takes over a name another image had."""
    out = []
    for ref in refs:
        old = store.meta.resolve_ref(str(ref))
        if old and old != image_id:
            out.append(f"The image {ref.familiar()} already exists, renaming the old one with ID {old} "
                       "to empty string")
    return out


def _load_oci(store: ImageStore, files: _Files) -> list[str]:
    try:
        index = parse_manifest(files.read("index.json"), OCI_INDEX)
    except ManifestError as e:
        raise ArchiveError(f"archive: index.json: {e}") from None
    if not isinstance(index, Index):
        raise ArchiveError("archive: index.json is not an image index")
    messages: list[str] = []
    for desc in index.manifests:
        if not store.content.has(desc.digest):
            raise ArchiveError(f"archive: blob {desc.digest} named in index.json is missing")
        ref = _layout_name(desc.annotations)
        if ref is not None:
            with contextlib.suppress(ManifestError, ContentError):
                doc = parse_manifest(store.content.read(desc.digest))
                if isinstance(doc, Manifest):
                    messages += _renames(store, [ref], doc.config.digest)
        image_id = store.register(desc.digest, ref, repo_digest=False)
        messages.append(f"Loaded image: {ref.familiar()}" if ref else f"Loaded image ID: {image_id}")
    return messages


def _layout_name(annotations: dict[str, str]) -> Reference | None:
    """The image name an index entry carries: containerd's full name, or a ref.name that is a full reference."""
    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key, "")
        if key == REF_NAME and "/" not in value and ":" not in value:
            continue  # a bare tag ("latest"): no repository to put it in
        with contextlib.suppress(ReferenceError):
            if value:
                return parse(value)
    return None

