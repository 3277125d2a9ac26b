"""The registry server's storage: blobs in a cais ContentStore, plus per-repository metadata.

    ROOT/content/                      the ContentStore (blobs/, ingest/ — uploads in progress too)
    ROOT/uploads/UUID.json             an upload session: repository, start time
    ROOT/repositories/NAME/_layers/ALGO/HEX            the repository may serve this blob
    ROOT/repositories/NAME/_manifests/revisions/ALGO/HEX   a manifest of the repository (its media type)
    ROOT/repositories/NAME/_manifests/tags/TAG         the digest a tag points at
    ROOT/repositories/NAME/_referrers/SUBJECTHEX/ALGO-HEX  a manifest whose `subject` is SUBJECT

Repository names are checked against the distribution grammar before they become paths: its
components cannot be empty, start with '.', '_' or '-', or contain '..', so NAME can neither
escape the tree nor collide with the '_' metadata directories.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid

from cais.image.content import ContentError, ContentStore, parse_digest

NAME_MAX = 255
NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
UUID_RE = re.compile(r"^[0-9a-f]{32}$")


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and NAME_RE.match(name) is not None


class RegistryStorage:
    def __init__(self, root: str) -> None:
        self.root = root
        self.content = ContentStore(os.path.join(root, "content"))
        self._repos = os.path.join(root, "repositories")
        self._uploads = os.path.join(root, "uploads")
        os.makedirs(self._repos, mode=0o700, exist_ok=True)
        os.makedirs(self._uploads, mode=0o700, exist_ok=True)

    def _repo(self, name: str, *parts: str) -> str:
        assert valid_name(name), name
        return os.path.join(self._repos, name, *parts)

    def repository_exists(self, name: str) -> bool:
        return os.path.isdir(self._repo(name))

    # -- blobs -------------------------------------------------------------------------------

    def has_blob(self, name: str, digest: str) -> bool:
        algorithm, hexpart = parse_digest(digest)
        return os.path.exists(self._repo(name, "_layers", algorithm, hexpart)) and self.content.has(digest)

    def link_blob(self, name: str, digest: str) -> None:
        algorithm, hexpart = parse_digest(digest)
        _write_atomic(self._repo(name, "_layers", algorithm, hexpart), b"")

    def unlink_blob(self, name: str, digest: str) -> bool:
        algorithm, hexpart = parse_digest(digest)
        return _unlink(self._repo(name, "_layers", algorithm, hexpart))

    # -- manifests and tags ------------------------------------------------------------------

    def manifest_type(self, name: str, digest: str) -> str | None:
        """The media type of a manifest of the repository, or None when it has no such manifest."""
        algorithm, hexpart = parse_digest(digest)
        try:
            with open(self._repo(name, "_manifests", "revisions", algorithm, hexpart)) as f:
                media_type = f.read()
        except FileNotFoundError:
            return None
        return media_type if self.content.has(digest) else None

    def put_manifest(self, name: str, body: bytes, digest: str, media_type: str) -> None:
        self.content.put(body, digest)
        algorithm, hexpart = parse_digest(digest)
        _write_atomic(self._repo(name, "_manifests", "revisions", algorithm, hexpart), media_type.encode())

    def delete_manifest(self, name: str, digest: str) -> bool:
        algorithm, hexpart = parse_digest(digest)
        found = _unlink(self._repo(name, "_manifests", "revisions", algorithm, hexpart))
        for tag in self.tags(name):
            if self.resolve(name, tag) == digest:
                self.untag(name, tag)
        return found

    def resolve(self, name: str, tag: str) -> str | None:
        try:
            with open(self._repo(name, "_manifests", "tags", tag)) as f:
                return f.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def tag(self, name: str, tag: str, digest: str) -> None:
        _write_atomic(self._repo(name, "_manifests", "tags", tag), digest.encode())

    def untag(self, name: str, tag: str) -> bool:
        return _unlink(self._repo(name, "_manifests", "tags", tag))

    def tags(self, name: str) -> list[str]:
        try:
            return sorted(t for t in os.listdir(self._repo(name, "_manifests", "tags")) if not t.startswith("."))
        except FileNotFoundError:
            return []

    def repositories(self) -> list[str]:
        found = []
        for dirpath, dirnames, _ in os.walk(self._repos):
            if "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, self._repos))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    # -- referrers ---------------------------------------------------------------------------

    def add_referrer(self, name: str, subject: str, digest: str) -> None:
        algorithm, hexpart = parse_digest(digest)
        _write_atomic(self._repo(name, "_referrers", subject.replace(":", "-"), f"{algorithm}-{hexpart}"), b"")

    def referrers(self, name: str, subject: str) -> list[str]:
        parse_digest(subject)
        try:
            entries = os.listdir(self._repo(name, "_referrers", subject.replace(":", "-")))
        except FileNotFoundError:
            return []
        digests = [e.replace("-", ":", 1) for e in sorted(entries) if not e.startswith(".")]
        return [d for d in digests if self.manifest_type(name, d) is not None]

    # -- garbage collection ------------------------------------------------------------------

    def collect_garbage(self) -> tuple[int, int]:
        """Delete blobs no manifest of any repository references; return (blobs, bytes) removed.

        As the distribution registry's `garbage-collect`, it must run while no one pushes (the
        server stopped): a blob uploaded for a manifest not yet put would look unreferenced.
        """
        keep: set[str] = set()
        for name in self.repositories():
            revisions = self._repo(name, "_manifests", "revisions")
            for algorithm in os.listdir(revisions) if os.path.isdir(revisions) else ():
                for hexpart in os.listdir(os.path.join(revisions, algorithm)):
                    if hexpart.startswith("."):
                        continue
                    digest = f"{algorithm}:{hexpart}"
                    keep.add(digest)
                    keep.update(_references(self.content, digest))
        removed = size = 0
        for digest, blob_size in list(self.content.walk()):
            if digest not in keep:
                self.content.delete(digest)
                removed += 1
                size += blob_size
        for dirpath, _, filenames in os.walk(self._repos):
            if os.path.basename(os.path.dirname(dirpath)) != "_layers":
                continue
            for hexpart in filenames:
                if f"{os.path.basename(dirpath)}:{hexpart}" not in keep:
                    _unlink(os.path.join(dirpath, hexpart))
        return removed, size

    # -- uploads -----------------------------------------------------------------------------

    def new_upload(self, name: str) -> str:
        upload_id = uuid.uuid4().hex
        _write_atomic(os.path.join(self._uploads, upload_id + ".json"),
                      json.dumps({"name": name, "started": time.time()}).encode())
        open(self.upload_path(upload_id), "wb").close()
        return upload_id

    def upload_repository(self, upload_id: str) -> str | None:
        if not UUID_RE.match(upload_id):
            return None
        try:
            with open(os.path.join(self._uploads, upload_id + ".json")) as f:
                return json.load(f)["name"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def upload_path(self, upload_id: str) -> str:
        assert UUID_RE.match(upload_id)
        return os.path.join(self.content.root, "ingest", f"upload-{upload_id}")

    def upload_size(self, upload_id: str) -> int:
        try:
            return os.stat(self.upload_path(upload_id)).st_size
        except FileNotFoundError:
            return 0

    def finish_upload(self, upload_id: str, digest: str) -> None:
        """Verify the upload against `digest` and publish it (raises DigestMismatch); the session ends either way."""
        try:
            if self.content.has(digest):
                return
            writer = self.content.writer(digest, ref=f"upload-{upload_id}")
            try:
                writer.commit()
            except BaseException:
                writer.abort()
                raise
        finally:
            self.cancel_upload(upload_id)

    def cancel_upload(self, upload_id: str) -> None:
        _unlink(self.upload_path(upload_id))
        _unlink(os.path.join(self._uploads, upload_id + ".json"))

    def sweep_uploads(self, older_than: float) -> int:
        """End upload sessions started more than `older_than` seconds ago; return how many."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.listdir(self._uploads):
            upload_id = entry.removesuffix(".json")
            if not UUID_RE.match(upload_id):
                continue
            path = os.path.join(self._uploads, entry)
            try:
                with open(path) as f:
                    started = float(json.load(f)["started"])
            except (OSError, ValueError, KeyError, TypeError):
                started = 0.0
            if started < cutoff:
                self.cancel_upload(upload_id)
                removed += 1
        return removed


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _references(content: ContentStore, digest: str) -> list[str]:
    """The digests a stored manifest or index points at (none for anything unreadable)."""
    try:
        obj = json.loads(content.read(digest))
    except (OSError, ValueError, ContentError):
        return []
    if not isinstance(obj, dict):
        return []
    found = []
    if isinstance(obj.get("config"), dict):
        found.append(obj["config"].get("digest"))
    for key in ("layers", "manifests"):
        for desc in obj.get(key) or []:
            if isinstance(desc, dict):
                found.append(desc.get("digest"))
    return [d for d in found if isinstance(d, str)]
