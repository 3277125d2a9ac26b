"""The image store: images made of blobs in the content store and layers in a storage driver.

`register` is the one way an image comes into being (pull, load, import, commit, bootstrap all
end there): the manifest, config and layer blobs must already be in the content store; each
layer is unpacked by the storage driver under its chain ID while its uncompressed bytes are
hashed, and must hash to the diff_id the config declares. Only then is the image recorded, in
one SQLite transaction, so an image is either fully there or not at all.

Removal follows `docker rmi` (untag first, delete when no reference is left, docker's conflict
rules and messages); layers and blobs no image or container needs any more are released.
Every public method returns plain data (dicts and lists shaped like the Docker Engine API's JSON).

Concurrency: SQLite serializes metadata writes. A layer's lock file (striped) serializes its
unpacking and its removal. `hold()` (shared) vs garbage collection (exclusive) keeps `gc` from
deleting blobs a pull or load has fetched but not registered yet; `rmi` never waits for a pull:
it leaves blobs to `gc` while anyone holds the store, and removes unused layers at once — except
those an in-flight register has pinned. A register pins each layer of its chain in the very
transaction that finds it ready (or marks it ready after unpacking it), and drops the pins in the
transaction that records the image; a removal checks for pins in the transaction that condemns
the layer. SQLite serializes the two, so a layer is either pinned before the removal looks (and
stays) or condemned before the register looks (which then unpacks it again, under its lock) —
the image never commits over a layer that is gone. Pins live only while their register holds the
store: pins found while nobody holds it are a crashed register's, and are dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from cais.image import layerio
from cais.image.config import ConfigError, chain_ids, diff_ids, parse_config
from cais.image.content import BlobNotFound, ContentError, ContentStore
from cais.image.errors import ImageConflict, ImageError, ImageNotFound, InvalidImage
from cais.image.filters import format_time, match_labels, match_reference, parse_time, parse_until, truthy
from cais.image.manifest import (
    FOREIGN_LAYER_TYPES,
    Index,
    Manifest,
    ManifestError,
    layer_compression,
    parse_manifest,
    select_manifest,
)
from cais.image.metadata import ImageRow, Metadata, MetadataError, now
from cais.image.platform import Platform
from cais.image.reference import Reference, ReferenceError, parse, parse_normalized
from cais.storage import Driver


def short_id(image_id: str) -> str:
    """docker's `stringid.TruncateID`."""
    return image_id.split(":", 1)[-1][:12]


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


class ImageStore:
    def __init__(self, root: str, driver: Driver, max_layer_size: int = layerio.DEFAULT_MAX_LAYER_SIZE,
                 platform: Platform | None = None) -> None:
        self.root = root
        self.driver = driver
        self.max_layer_size = max_layer_size
        self.platform = platform
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(root, "locks"), mode=0o700, exist_ok=True)
        self.content = ContentStore(os.path.join(root, "content"))
        # which containers run now, from whoever knows (the engine, in memory); without it, the
        # containers table's `running` column (set_container_running) says it
        self.running_containers: Callable[[], set[str]] | None = None
        try:
            self.meta = Metadata(os.path.join(root, "metadata.db"))
        except (MetadataError, sqlite3.DatabaseError) as e:
            raise ImageError(f"cannot open the image metadata: {e}") from None

    def close(self) -> None:
        self.meta.close()

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(os.path.join(self.root, "locks", name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Keep garbage collection away while blobs are fetched and registered (shared lock)."""
        return self._flock("gc.lock", fcntl.LOCK_SH)

    # ------------------------------------------------------------------ lookup
    def resolve(self, name: str) -> str:
        """An image ID (``sha256:…``) for a reference, a full ID or an unambiguous ID prefix."""
        candidate = name.removeprefix("sha256:")
        if re.fullmatch(r"[a-f0-9]{64}", candidate):
            image_id = "sha256:" + candidate
            if self.meta.image(image_id):
                return image_id
            raise ImageNotFound(f"No such image: {name}")
        ref = None
        with contextlib.suppress(ReferenceError):
            ref = parse(name)
        if ref is not None:
            found = self.meta.resolve_ref(str(ref if not (ref.tag and ref.digest) else Reference(
                ref.domain, ref.path, None, ref.digest)))  # docker looks a tag+digest reference up by digest
            if found:
                return found
        if re.fullmatch(r"[a-f0-9]{1,63}", candidate) and (name == candidate or name.startswith("sha256:")):
            matches = self.meta.image_ids_with_prefix("sha256:" + candidate)
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ImageError(f"multiple IDs found with provided prefix: {candidate}")
        if ref is None:
            raise InvalidImage(f"invalid reference format: {name}")
        raise ImageNotFound(f"No such image: {ref.familiar()}")

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self.content.read(image_id))

    def manifest(self, name: str) -> tuple[str, Manifest]:
        """The digest and the parsed image manifest an image was registered from (what a push sends)."""
        image_id = self.resolve(name)
        for digest, _ in self.meta.manifests(image_id):
            with contextlib.suppress(BlobNotFound):
                doc = parse_manifest(self.content.read(digest))
                if isinstance(doc, Manifest):
                    return digest, doc
        raise ImageError(f"image {image_id} has no manifest in the content store")

    def _row(self, name: str) -> ImageRow:
        row = self.meta.image(self.resolve(name))
        if row is None:  # removed between the two queries
            raise ImageNotFound(f"No such image: {name}")
        return row

    # ------------------------------------------------------------------ register
    def register(self, manifest_digest: str, reference: str | Reference | None = None,
                 repo_digest: bool = True, parent: str = "", platform: Platform | None = None) -> str:
        """Turn a manifest (or index) and its blobs, all in the content store, into an image.

        `reference` tags the image (a tag) or records its repo digest (a digest); with
        `repo_digest` a tagged reference also gets ``name@manifest_digest`` (what a pull records).
        An index resolves to its entry for `platform` (default: the store's, else this host's).
        Returns the image ID. Raises ImageError and registers nothing on any problem.
        """
        ref = self._parse_ref(reference)
        with self.hold():
            try:
                man, extra = self._load_manifest(manifest_digest, platform or self.platform)
                return self._register(man, manifest_digest, extra, ref, repo_digest, parent)
            except (ManifestError, ContentError) as e:
                raise InvalidImage(str(e)) from None

    @staticmethod
    def _parse_ref(reference: str | Reference | None) -> Reference | None:
        if reference is None or isinstance(reference, Reference):
            return reference
        try:
            return parse(reference)
        except ReferenceError as e:
            raise InvalidImage(str(e)) from None

    def _load_manifest(self, digest: str, platform: Platform | None) -> tuple[tuple[str, Manifest], list[str]]:
        """The image manifest for `digest`, following an index to this platform's entry."""
        try:
            doc = parse_manifest(self.content.read(digest))
        except BlobNotFound:
            raise InvalidImage(f"manifest {digest} is not in the content store") from None
        extra: list[str] = []
        depth = 0
        while isinstance(doc, Index):
            depth += 1
            if depth > 4:
                raise InvalidImage(f"index {digest} nests too deeply")
            extra.append(digest)
            digest = select_manifest(doc, platform).digest
            try:
                doc = parse_manifest(self.content.read(digest))
            except BlobNotFound:
                raise InvalidImage(f"manifest {digest} is not in the content store") from None
        if not doc.is_image:
            raise InvalidImage(f"{digest} is not a container image (config type {doc.config.media_type})")
        return (digest, doc), extra

    def _register(self, loaded: tuple[str, Manifest], top_digest: str, extra: list[str], ref: Reference | None,
                  repo_digest: bool, parent: str) -> str:
        manifest_digest, man = loaded
        image_id = man.config.digest
        try:
            raw_config = self.content.read(image_id)
        except BlobNotFound:
            raise InvalidImage(f"config {image_id} of manifest {manifest_digest} is not in the content store") from None
        if len(raw_config) != man.config.size:
            raise InvalidImage(f"config {image_id} is {len(raw_config)} bytes, the manifest says {man.config.size}")
        try:
            cfg = parse_config(raw_config)
        except ConfigError as e:
            raise InvalidImage(str(e)) from None
        diffs = diff_ids(cfg)
        if len(diffs) != len(man.layers):
            raise InvalidImage(f"manifest {manifest_digest} has {len(man.layers)} layers but its config has "
                               f"{len(diffs)} diff_ids")
        for layer in man.layers:
            if layer.media_type in FOREIGN_LAYER_TYPES and not self.content.has(layer.digest):
                raise InvalidImage(f"layer {layer.digest} is a foreign (non-distributable) layer, which cais "
                                   "does not fetch")
            if not self.content.has(layer.digest):
                raise InvalidImage(f"layer blob {layer.digest} is not in the content store")
            if self.content.size(layer.digest) != layer.size:
                raise InvalidImage(f"layer blob {layer.digest} has size {self.content.size(layer.digest)}, "
                                   f"the manifest says {layer.size}")
        chains = chain_ids(diffs)
        top = chains[-1] if chains else None
        created = parse_time(cfg.get("created"))
        labels = (cfg.get("config") or {}).get("Labels") or {}
        blobs = {top_digest, manifest_digest, image_id, *extra, *(layer.digest for layer in man.layers)}
        token = os.urandom(16).hex()
        try:
            pinned = self._pin_ready(chains, token)
            for i, layer in enumerate(man.layers):
                if chains[i] not in pinned:
                    self._ensure_layer(chains[i], chains[i - 1] if i else None, diffs[i], layer.digest,
                                       layer.media_type, token)
            size = sum(r.size for r in self.meta.layer_chain(top))
            with self.meta.tx() as db:
                db.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (image_id, top, parent, created, size, cfg.get("os", ""), cfg.get("architecture", ""),
                            cfg.get("variant", ""), json.dumps(labels if isinstance(labels, dict) else {}), 0.0,
                            now()))
                db.execute("INSERT OR IGNORE INTO image_manifests VALUES (?,?,?)",
                           (image_id, manifest_digest, man.media_type))
                db.executemany("INSERT OR IGNORE INTO image_blobs VALUES (?,?)", [(image_id, b) for b in sorted(blobs)])
                if ref is not None:
                    if ref.tag:
                        self._set_ref(db, str(Reference(ref.domain, ref.path, ref.tag)), image_id, "tag")
                    if ref.digest or repo_digest:
                        digest = ref.digest or top_digest
                        self._set_ref(db, str(Reference(ref.domain, ref.path, None, digest)), image_id, "digest")
                db.execute("DELETE FROM layer_pins WHERE token = ?", (token,))
        except BaseException:
            with contextlib.suppress(Exception), self.meta.tx(durable=False) as db:
                db.execute("DELETE FROM layer_pins WHERE token = ?", (token,))
            raise
        return image_id

    def _pin_ready(self, chains: list[str], token: str) -> set[str]:
        """Pin, in one transaction, every layer of `chains` that is ready; the ones pinned.
        Not durable: after a machine crash, pins mean nothing."""
        if not chains:
            return set()
        with self.meta.tx(durable=False) as db:
            marks = ",".join("?" * len(chains))
            ready = {c for (c,) in db.execute(f"SELECT chain_id FROM layers WHERE state = 'ready' AND chain_id IN "
                                              f"({marks})", chains)}
            db.executemany("INSERT OR IGNORE INTO layer_pins VALUES (?,?)", [(token, c) for c in ready])
        return ready

    def _ensure_layer(self, chain: str, parent: str | None, diff_id: str, blob: str, media_type: str,
                      token: str) -> None:
        """Make a layer ready (unpacking it under its lock) and pin it for `token`; its parent is
        pinned already, so it stays."""
        with self._flock(_layer_lock(chain), fcntl.LOCK_EX):
            if self._pin_ready([chain], token):  # unpacked by someone else meanwhile
                return
            if self.meta.layer(chain) is not None:  # 'unpacking' and its lock is free: a crashed unpack or removal
                self._remove_layer_locked(chain, only_if_unused=False)
            with self.meta.tx() as db:
                db.execute("INSERT INTO layers VALUES (?,?,?,?,?,?,?)", (chain, diff_id, parent, 0, 0, "unpacking", now()))
            try:
                size, diff_size = self._unpack(chain, parent, diff_id, blob, media_type)
            except BaseException as e:
                with contextlib.suppress(Exception):
                    self._remove_layer_locked(chain, only_if_unused=False)
                if isinstance(e, ImageError):
                    raise
                if isinstance(e, Exception):
                    raise InvalidImage(f"failed to unpack layer {blob}: {e}") from None
                raise
            with self.meta.tx() as db:
                db.execute("UPDATE layers SET state = 'ready', size = ?, diff_size = ? WHERE chain_id = ?",
                           (size, diff_size, chain))
                db.execute("INSERT OR REPLACE INTO blob_diffs VALUES (?,?,?)", (blob, diff_id, media_type))
                db.execute("INSERT OR IGNORE INTO layer_pins VALUES (?,?)", (token, chain))

    def _unpack(self, chain: str, parent: str | None, diff_id: str, blob: str, media_type: str) -> tuple[int, int]:
        """Unpack one layer blob; the driver decompresses it and hashes the tar on the way."""
        layer_compression(media_type)  # refuses unknown media types
        with self.content.open(blob) as raw:
            result = self.driver.apply_diff(_hex(chain), _hex(parent) if parent else None, raw,
                                            max_size=self.max_layer_size)
        if result.diff_id != diff_id:
            raise InvalidImage(f"layer {blob} unpacks to {result.diff_id}, but the image config says {diff_id}")
        return result.size, result.tar_size

    def _remove_layer(self, chain: str, only_if_unused: bool = True) -> bool:
        with self._flock(_layer_lock(chain), fcntl.LOCK_EX):
            return self._remove_layer_locked(chain, only_if_unused)

    def _remove_layer_locked(self, chain: str, only_if_unused: bool) -> bool:
        """Remove a layer (caller holds its lock): in one transaction check that nothing needs it
        and mark it untrusted ('unpacking'), then remove it from the driver, then drop its row —
        a crash in between leaves an 'unpacking' row, cleaned up like a crashed unpack."""
        with self.meta.tx() as db:
            if db.execute("SELECT 1 FROM layers WHERE chain_id = ?", (chain,)).fetchone() is None:
                return False
            if only_if_unused and (db.execute("SELECT 1 FROM layers WHERE parent = ? LIMIT 1", (chain,)).fetchone()
                                   or self._pinned(db, chain) or chain in self._referenced_layers()):
                return False
            db.execute("UPDATE layers SET state = 'unpacking' WHERE chain_id = ?", (chain,))
        if self.driver.has_layer(_hex(chain)):
            self.driver.remove_layer(_hex(chain))
        with self.meta.tx() as db:
            db.execute("DELETE FROM layers WHERE chain_id = ?", (chain,))
        return True

    def _pinned(self, db: sqlite3.Connection, chain: str) -> bool:
        """Whether an in-flight register relies on a layer (inside a removal's transaction).
        Pins while nobody holds the store are a crashed register's: dropped (a live register
        holds the store, and cannot add pins while this transaction has the write lock)."""
        if db.execute("SELECT 1 FROM layer_pins WHERE chain_id = ? LIMIT 1", (chain,)).fetchone() is None:
            return False
        with self._try_lock("gc.lock") as alone:
            if not alone:
                return True
        db.execute("DELETE FROM layer_pins")
        return False

    @staticmethod
    def _set_ref(db: Any, ref: str, image_id: str, kind: str) -> None:
        db.execute("INSERT INTO refs VALUES (?,?,?,?) ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id, "
                   "created = excluded.created", (ref, image_id, kind, now()))
        if kind == "tag":
            db.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (now(), image_id))

    # ------------------------------------------------------------------ queries
    def _tags_and_digests(self, image_id: str) -> tuple[list[str], list[str]]:
        tags = [parse(r).familiar() for r in self.meta.refs(image_id, "tag")]
        digests = [parse_normalized(r).familiar() for r in self.meta.refs(image_id, "digest")]
        return tags, digests

    def _summary(self, row: ImageRow) -> dict[str, Any]:
        tags, digests = self._tags_and_digests(row.id)
        if not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        return {"Id": row.id, "ParentId": row.parent, "RepoTags": tags, "RepoDigests": digests,
                "Created": int(row.created), "Size": row.size, "SharedSize": -1, "VirtualSize": row.size,
                "Labels": row.labels or None, "Containers": -1}

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """`docker images` / GET /images/json. Filters: dangling, label, before, since, reference."""
        filters = filters or {}
        rows = self.meta.images()
        before = [self._row(v).created for v in filters.get("before", [])]
        since = [self._row(v).created for v in filters.get("since", [])]
        out = []
        for row in rows:
            refs = self.meta.refs(row.id)
            if not all and not refs and self.meta.children(row.id):
                continue  # an intermediate image
            if "dangling" in filters:  # docker: true = no tag; false = any reference (a digest is enough)
                if truthy(filters["dangling"][-1]):
                    if self.meta.refs(row.id, "tag"):
                        continue
                elif not refs:
                    continue
            if not match_labels(row.labels, filters.get("label", []), filters.get("label!", [])):
                continue
            if any(row.created >= b for b in before) or any(row.created <= s for s in since):
                continue
            summary = self._summary(row)
            if filters.get("reference"):  # as dockerd: only the matching references are listed
                for key, refs_ in zip(("RepoTags", "RepoDigests"), self._tags_and_digests(row.id), strict=True):
                    summary[key] = [r for r in refs_ if any(match_reference(r, p) for p in filters["reference"])]
                if not summary["RepoTags"] and not summary["RepoDigests"]:
                    continue
            out.append(summary)
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        """`docker image inspect` / GET /images/{name}/json."""
        row = self._row(name)
        cfg = self.config(row.id)
        tags, digests = self._tags_and_digests(row.id)
        container_config = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                            "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
                            "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
                            "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
                            **(cfg.get("config") or {})}
        out: dict[str, Any] = {
            "Id": row.id, "RepoTags": tags, "RepoDigests": digests, "Parent": row.parent,
            "Comment": cfg.get("comment", ""), "Created": cfg.get("created") or format_time(0),
            "Container": cfg.get("container", ""), "ContainerConfig": cfg.get("container_config") or {},
            "DockerVersion": cfg.get("docker_version", ""), "Author": cfg.get("author", ""),
            "Config": container_config, "Architecture": row.architecture, "Os": row.os,
            "Size": row.size, "VirtualSize": row.size,
            "GraphDriver": {"Name": getattr(self.driver, "name", ""), "Data": None},
            "RootFS": {"Type": "layers", "Layers": diff_ids(cfg)},
            "Metadata": {"LastTagTime": format_time(row.last_tag_time)},
        }
        if row.variant:
            out["Variant"] = row.variant
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        """`docker history` / GET /images/{name}/history, newest first."""
        row = self._row(name)
        cfg = self.config(row.id)
        diffs = diff_ids(cfg)
        chains = chain_ids(diffs)
        out: list[dict[str, Any]] = []
        n = 0
        for h in cfg.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if n >= len(chains):
                    raise InvalidImage("too many non-empty layers in History section")
                layer = self.meta.layer(chains[n])
                size = layer.size if layer else 0
                n += 1
            out.insert(0, {"Id": "<missing>", "Created": int(parse_time(h.get("created"))),
                           "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                           "Comment": h.get("comment", "")})
        image_id: str | None = row.id
        for entry in out:
            if not image_id:
                break
            entry["Id"] = image_id
            entry["Tags"] = self._tags_and_digests(image_id)[0] or None
            parent = self.meta.image(image_id)
            image_id = parent.parent if parent else None
        return out

    def tag(self, source: str, target: str) -> None:
        """`docker tag`: point `target` (a name, ``:latest`` if untagged) at `source`'s image."""
        image_id = self.resolve(source)
        try:
            ref = parse_normalized(target)
        except ReferenceError as e:
            raise InvalidImage(str(e)) from None
        if ref.digest:
            raise InvalidImage("refusing to create a tag with a digest reference")
        ref = parse(target)
        with self.meta.tx() as db:
            self._set_ref(db, str(ref), image_id, "tag")

    # ------------------------------------------------------------------ containers
    def add_container(self, container_id: str, image: str, running: bool = False, *, durable: bool = True) -> str:
        """Record that a container uses an image (its layers stay while it exists). Returns the image ID.
        `durable=False` (a --rm container): the engine drops the rows of vanished containers at its start."""
        row = self._row(image)
        with self.meta.tx(durable=durable) as db:
            if db.execute("SELECT 1 FROM images WHERE id = ?", (row.id,)).fetchone() is None:
                raise ImageNotFound(f"No such image: {image}")  # removed just now
            db.execute("INSERT OR REPLACE INTO containers VALUES (?,?,?,?)",
                       (container_id, row.id, row.top_layer, int(running)))
        return row.id

    def set_container_running(self, container_id: str, running: bool) -> None:
        # "running" need not wait for the disk (it is on every container's start): a machine crash
        # stops the container too, and caisd then records its exit, which is written durably
        with self.meta.tx(durable=not running) as db:
            db.execute("UPDATE containers SET running = ? WHERE container_id = ?", (int(running), container_id))

    def remove_container(self, container_id: str, *, durable: bool = True) -> None:
        with self.meta.tx(durable=durable) as db:
            db.execute("DELETE FROM containers WHERE container_id = ?", (container_id,))

    def forget_containers_except(self, existing: Callable[[], set[str]]) -> list[str]:
        """Drop the rows of containers that `existing()` (asked after reading the rows: a container
        exists before its row does) does not name — a crash lost their removal; their ids."""
        rows = [cid for (cid,) in self.meta.q("SELECT container_id FROM containers")]
        alive = existing()
        gone = [cid for cid in rows if cid not in alive]
        for cid in gone:
            self.remove_container(cid)
        return gone

    # ------------------------------------------------------------------ removal (docker rmi)
    def remove(self, name: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """`docker rmi`: untag, and delete the image when nothing refers to it any more."""
        return self._remove(name, force, prune)

    def _remove(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]:
        """docker's ImageDelete, step for step (daemon/images/image_delete.go)."""
        image_id = self.resolve(name)
        records: list[dict[str, str]] = []
        repo_refs = self.meta.refs(image_id)
        if not _is_id_prefix(image_id, name):
            # A reference was named: untag it; delete the image only if that was its last reference.
            if not force and _single_reference(repo_refs):
                users = self.meta.container_users(image_id)
                if users:
                    raise ImageConflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                                        f"container {short_id(users[0][0])} is using its referenced image "
                                        f"{short_id(image_id)}")
            ref = parse_normalized(name)
            ref = parse(name) if ref.is_name_only else ref
            records.append(self._untag(str(ref)))
            if not ref.digest and not any(parse(r).name == ref.name for r in self.meta.refs(image_id, "tag")):
                # The repository's last tag went: its digest references go with it.
                records += [self._untag(r) for r in self.meta.refs(image_id, "digest")
                            if parse_normalized(r).name == ref.name]
            if self.meta.refs(image_id):
                return records
            self._delete_helper(image_id, records, force, prune, quiet=True)
            return records
        if _single_reference(repo_refs):
            # An ID was named and all its references are in one repository: they all go.
            self._check_conflict(image_id, hard=True, soft=not force, active_reference=False)
            records += [self._untag(r) for r in repo_refs]
        self._delete_helper(image_id, records, force, prune, quiet=False)
        return records

    def _untag(self, ref: str) -> dict[str, str]:
        with self.meta.tx() as db:
            db.execute("DELETE FROM refs WHERE ref = ?", (ref,))
        return {"Untagged": parse_normalized(ref).familiar()}

    def _check_conflict(self, image_id: str, hard: bool, soft: bool, active_reference: bool = True) -> None:
        """docker's checkImageDeleteConflict; `hard` conflicts can never be forced."""
        def conflict(message: str, is_hard: bool) -> ImageConflict:
            return ImageConflict(f"conflict: unable to delete {short_id(image_id)} "
                                 f"({'cannot be forced' if is_hard else 'must be forced'}) - {message}",
                                 used="container" in message)

        users = self.meta.container_users(image_id)
        if hard and self.meta.children(image_id):
            raise conflict("image has dependent child images", True)
        now = self.running_containers() if self.running_containers is not None else None
        running = [c for c, r in users if (c in now if now is not None else r)]
        if hard and running:
            raise conflict(f"image is being used by running container {short_id(running[0])}", True)
        if soft and active_reference and self.meta.refs(image_id):
            raise conflict("image is referenced in multiple repositories", False)
        stopped = [c for c, _ in users if c not in running]
        if soft and stopped:
            raise conflict(f"image is being used by stopped container {short_id(stopped[0])}", False)

    def _delete_helper(self, image_id: str, records: list[dict[str, str]], force: bool, prune: bool,
                       quiet: bool) -> None:
        """Delete an image, its references, and the layers and blobs only it used; then, with
        `prune`, its parent if that became dangling. `quiet` swallows conflicts (docker's rules)."""
        try:
            self._check_conflict(image_id, hard=True, soft=not force)
        except ImageConflict as e:
            dangling = not self.meta.refs(image_id) and not self.meta.children(image_id)
            if quiet and (not dangling or e.used):
                return
            raise
        row = self.meta.image(image_id)
        if row is None:
            return
        for r in self.meta.refs(image_id):
            records.append({"Untagged": parse_normalized(r).familiar()})
        blobs = [r[0] for r in self.meta.q("SELECT digest FROM image_blobs WHERE image_id = ?", image_id)]
        with self.meta.tx() as db:
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        records.append({"Deleted": image_id})
        for chain in self._release_layers(row.top_layer):
            records.append({"Deleted": chain})
        self._release_blobs(blobs)
        if prune and row.parent and self.meta.image(row.parent):
            self._delete_helper(row.parent, records, False, True, True)

    def _referenced_layers(self) -> set[str]:
        tops = [r[0] for r in self.meta.q("SELECT top_layer FROM images WHERE top_layer IS NOT NULL")]
        tops += self.meta.container_layers()
        parents = dict(self.meta.q("SELECT chain_id, parent FROM layers"))
        keep: set[str] = set()
        for top in tops:
            while top and top not in keep:
                keep.add(top)
                top = parents.get(top)
        return keep

    def _release_layers(self, top: str | None) -> list[str]:
        """Remove the layers of a deleted image that nothing else uses, top first; their chain IDs."""
        removed = []
        for layer in reversed(self.meta.layer_chain(top)):
            if not self._remove_layer(layer.chain_id):
                break
            removed.append(layer.chain_id)
        return removed

    def _release_blobs(self, blobs: list[str]) -> None:
        """Delete the blobs of a deleted image that no other image uses — unless a pull or load
        holds the store (it may be about to use them): then `gc` collects them later."""
        with self._try_lock("gc.lock") as alone:
            if not alone:
                return
            for digest in blobs:
                with self.meta.tx() as db:
                    if db.execute("SELECT 1 FROM image_blobs WHERE digest = ? LIMIT 1", (digest,)).fetchone():
                        continue
                    self.content.delete(digest)
                    db.execute("DELETE FROM blob_diffs WHERE digest = ?", (digest,))

    # ------------------------------------------------------------------ prune, gc, df
    def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """`docker image prune` / POST /images/prune. filters: dangling (default true), until, label, label!."""
        filters = filters or {}
        dangling_only = truthy(filters.get("dangling", ["true"])[-1])
        until = min((parse_until(u) for u in filters.get("until", [])), default=None)
        layer_sizes = {row.chain_id: row.size for row in self.meta.layers()}
        deleted: list[dict[str, str]] = []
        for row in self.meta.images():
            if self.meta.image(row.id) is None:  # went with an earlier one
                continue
            refs = self.meta.refs(row.id)
            if self.meta.children(row.id) and (dangling_only or not refs):
                continue
            if until is not None and row.created > until:
                continue
            if not match_labels(row.labels, filters.get("label", []), filters.get("label!", [])):
                continue
            names = [row.id.removeprefix("sha256:")]
            if refs:
                if dangling_only and self.meta.refs(row.id, "tag"):
                    continue
                names = refs
            for name in names:
                with contextlib.suppress(ImageError):
                    deleted += self._remove(name, force=False, prune=True)
        reclaimed = sum(layer_sizes.get(d["Deleted"], 0) for d in deleted if "Deleted" in d)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def gc(self, min_age: float = 0.0) -> dict[str, Any]:
        """Remove layers and blobs that no image or container refers to, and crashed leftovers."""
        cutoff = time.time() - min_age
        layers_deleted: list[str] = []
        blobs_deleted: list[str] = []
        reclaimed = 0
        with self._flock("gc.lock", fcntl.LOCK_EX):
            with self.meta.tx(durable=False) as db:  # no register is in flight: pins are leftovers
                db.execute("DELETE FROM layer_pins")
            keep = self._referenced_layers()
            # Children before parents: deepest chains first.
            rows = {row.chain_id: row for row in self.meta.layers()}
            depth = {c: len(self.meta.layer_chain(c)) for c in rows}
            for chain in sorted(rows, key=lambda c: -depth[c]):
                if chain in keep:
                    continue
                if rows[chain].state == "unpacking":
                    with self._try_lock(_layer_lock(chain)) as free:
                        if not free or not self._remove_layer_locked(chain, only_if_unused=False):
                            continue  # being unpacked (or removed) right now
                elif not self._remove_layer(chain):
                    continue
                reclaimed += rows[chain].size
                layers_deleted.append(chain)
            wanted = {r[0] for r in self.meta.q("SELECT DISTINCT digest FROM image_blobs")}
            for digest, size in list(self.content.walk()):
                if digest in wanted:
                    continue
                with contextlib.suppress(OSError):
                    if os.stat(self.content.path(digest)).st_mtime > cutoff:
                        continue
                self.content.delete(digest)
                blobs_deleted.append(digest)
                reclaimed += size
            with self.meta.tx() as db:
                db.execute("DELETE FROM blob_diffs WHERE digest NOT IN (SELECT digest FROM image_blobs)")
            self.content.sweep_ingest(older_than=max(min_age, 3600.0))
        return {"LayersDeleted": layers_deleted, "BlobsDeleted": blobs_deleted, "SpaceReclaimed": reclaimed}

    @contextlib.contextmanager
    def _try_lock(self, name: str) -> Iterator[bool]:
        fd = os.open(os.path.join(self.root, "locks", name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def disk_usage(self) -> dict[str, Any]:
        """The images part of `docker system df`: LayersSize and Images with SharedSize and Containers."""
        chains: dict[str, list[str]] = {}
        for row in self.meta.images():
            chains[row.id] = [layer.chain_id for layer in self.meta.layer_chain(row.top_layer)]
        users: dict[str, int] = {}
        for layer in chains.values():
            for c in set(layer):
                users[c] = users.get(c, 0) + 1
        sizes = {row.chain_id: row.size for row in self.meta.layers()}
        images = []
        for row in self.meta.images():
            summary = self._summary(row)
            summary["SharedSize"] = sum(sizes.get(c, 0) for c in chains[row.id] if users[c] > 1)
            summary["Containers"] = len(self.meta.container_users(row.id))
            images.append(summary)
        return {"LayersSize": sum(sizes.values()), "Images": images}

    def layers_of(self, name: str) -> list[dict[str, Any]]:
        """Each layer of an image, bottom first: chain ID (the driver's layer id is its hex part),
        diff ID, sizes, and RefCount — how many images and containers stand on it."""
        row = self._row(name)
        counts = self.layer_refcounts()
        return [{"ChainID": r.chain_id, "DiffID": r.diff_id, "Size": r.size, "DiffSize": r.diff_size,
                 "RefCount": counts.get(r.chain_id, 0)} for r in self.meta.layer_chain(row.top_layer)]

    def top_layer_id(self, name: str) -> str | None:
        """The storage driver's id of an image's top layer (the parent of a container's rw layer)."""
        top = self._row(name).top_layer
        return _hex(top) if top else None

    def layer_refcounts(self) -> dict[str, int]:
        """Chain ID → number of images and containers whose layer chain includes it."""
        parents = dict(self.meta.q("SELECT chain_id, parent FROM layers"))
        tops = [r[0] for r in self.meta.q("SELECT top_layer FROM images WHERE top_layer IS NOT NULL")]
        counts: dict[str, int] = {}
        for top in tops + self.meta.container_layers():
            while top:
                counts[top] = counts.get(top, 0) + 1
                top = parents.get(top)
        return counts


def _is_id_prefix(image_id: str, name: str) -> bool:
    return image_id.removeprefix("sha256:").startswith(name.removeprefix("sha256:")) and bool(
        re.fullmatch(r"(sha256:)?[a-f0-9]+", name))


def _single_reference(refs: list[str]) -> bool:
    """docker's isSingleReference: at most one tag, and every ref in one repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if "@" not in r]
    if len(tags) > 1:
        return False
    names = {parse_normalized(r).name for r in refs if "@" in r}
    single = parse_normalized(tags[0] if tags else refs[0]).name
    return len(names) == 1 and single in names


def _layer_lock(chain: str) -> str:
    """The lock file serializing the unpack of a layer: 256 stripes, so lock files stay few."""
    return f"layer-{_hex(chain)[:2]}.lock"


DEFAULT_DATA_ROOT = "/var/lib/cais"


def open_store(data_root: str = DEFAULT_DATA_ROOT, driver: str | None = None) -> ImageStore:
    """The image store of a cais data root: images under ROOT/image, layers under ROOT/storage
    with the storage driver `driver` (default: the one in use there, else overlay if it works, else vfs)."""
    from cais.storage import open_driver

    return ImageStore(os.path.join(data_root, "image"), open_driver(os.path.join(data_root, "storage"), driver))
