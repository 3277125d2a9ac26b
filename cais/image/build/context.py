"""The build context: a directory, a tarball or stdin, filtered by .dockerignore.

COPY and ADD read their sources only through `BuildContext.resolve`, which keeps every path
inside the context: `..` that climbs out and symlinks that point out are refused with a clear
error (the source's own symlinks are followed, but only within the context, as docker does).
A tar context is unpacked into a private temporary directory, refusing entries that would land
outside it, device nodes and links that climb out.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from cais.image.build.dockerignore import Matcher, pattern_regex

DEFAULT_DOCKERFILE = "Dockerfile"
_MAX_SYMLINKS = 40
_GLOB_CHARS = set("*?[\\")


class ContextError(Exception):
    """A context, Dockerfile or COPY source that cannot be used; the message says why."""


class BuildContext:
    """A context directory (`root`), its Dockerfile text and its .dockerignore matcher."""

    def __init__(self, root: str, dockerfile: bytes, dockerfile_name: str, ignore: Matcher,
                 cleanup: str | None = None) -> None:
        self.root = os.path.realpath(root)
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name
        self.ignore = ignore
        self._cleanup = cleanup
        self._hashes: dict[tuple[int, int, int, int], str] = {}

    # --- opening ---

    @classmethod
    def open(cls, source: str, dockerfile: str | None = None, *, stdin: BinaryIO | None = None,
             tmp_dir: str | None = None) -> BuildContext:
        """`source`: a directory, a (compressed) tarball, or "-" for stdin (a tar or a bare
        Dockerfile). `dockerfile`: a path inside the context, an absolute path, or "-" (stdin)."""
        dockerfile_text = None
        if dockerfile == "-":
            if source == "-":
                raise ContextError("the Dockerfile and the context cannot both come from stdin")
            dockerfile_text = _read_stdin(stdin)
            dockerfile = None
        if source == "-":
            if stdin is None:
                raise ContextError("no standard input to read the context or Dockerfile from")
            head = _read_at_least(stdin, 512)
            if _is_archive(head):  # streamed: a context is not held in memory
                return cls._from_tar(_Prefixed(head, stdin), dockerfile, tmp_dir, dockerfile_text)
            data = head + _read_stdin(stdin)
            empty = tempfile.mkdtemp(prefix=f"cais-build-ctx-{os.getpid()}-", dir=tmp_dir)
            return cls(empty, data, DEFAULT_DOCKERFILE, Matcher([]), cleanup=empty)
        if os.path.isdir(source):
            return cls._from_dir(source, dockerfile, dockerfile_text)
        if os.path.isfile(source):
            with open(source, "rb") as f:
                return cls._from_tar(f, dockerfile, tmp_dir, dockerfile_text)
        raise ContextError(f"unable to prepare context: path {source!r} not found")

    @classmethod
    def _from_dir(cls, root: str, dockerfile: str | None, text: bytes | None, cleanup: str | None = None
                  ) -> BuildContext:
        """Files named relative to the context (the Dockerfile, .dockerignore) are looked up like
        COPY sources: never outside it, even through a symlink (a context may come from a client)."""
        ctx = cls(root, b"", DEFAULT_DOCKERFILE, Matcher([]), cleanup)
        try:
            ctx._load(dockerfile, text)
        except BaseException:
            ctx.close()
            raise
        return ctx

    def _load(self, dockerfile: str | None, text: bytes | None) -> None:
        name = dockerfile or DEFAULT_DOCKERFILE
        if os.path.isabs(name):
            path = name  # given on the command line: the user's own file
        else:
            if dockerfile is None and not os.path.lexists(self.path(name)) and \
                    os.path.lexists(self.path("dockerfile")):
                name = "dockerfile"
            path = self.path(self.resolve(name))
        if text is None:
            try:
                with open(path, "rb") as f:
                    text = f.read()
            except FileNotFoundError:
                raise ContextError(f"unable to prepare context: cannot find Dockerfile {name!r}") from None
            except OSError as e:
                raise ContextError(f"cannot read Dockerfile {name!r}: {e.strerror}") from None
        ignore_text = ""
        candidates = [path + ".dockerignore"] if os.path.isabs(name) else [self.path(self.resolve(name + ".dockerignore"))]
        candidates.append(self.path(self.resolve(".dockerignore")))
        for candidate in candidates:
            if os.path.isfile(candidate):
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    ignore_text = f.read()
                break
        try:
            self.ignore = Matcher.from_text(ignore_text)
        except ValueError as e:
            raise ContextError(f".dockerignore: {e}") from None
        self.dockerfile = text
        self.dockerfile_name = os.path.basename(name)

    @classmethod
    def _from_tar(cls, stream: BinaryIO, dockerfile: str | None, tmp_dir: str | None,
                  text: bytes | None) -> BuildContext:
        root = tempfile.mkdtemp(prefix=f"cais-build-ctx-{os.getpid()}-", dir=tmp_dir)
        try:
            extract_tar(stream, root)
        except BaseException:
            _remove(root)
            raise
        if dockerfile is not None and os.path.isabs(dockerfile):
            dockerfile = dockerfile.lstrip("/")
        return cls._from_dir(root, dockerfile, text, cleanup=root)

    def close(self) -> None:
        _remove(self._cleanup)
        self._cleanup = None

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sources ---

    def included(self, rel: str) -> bool:
        return rel in ("", ".") or not self.ignore.excluded(rel)

    def resolve(self, rel: str, *, follow: bool = True) -> str:
        """The context-relative path of `rel` with every symlink resolved inside the context.

        Raises ContextError when `rel` climbs out with `..` or through a symlink pointing
        outside. The last component's symlink is followed only with `follow`."""
        norm = posixpath.normpath("/" + rel) if rel else "/"
        if _climbs_out(rel):
            raise ContextError(f"forbidden path outside the build context: {rel}")
        parts = [p for p in norm.split("/") if p]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not done:
                    raise ContextError(f"forbidden path outside the build context: {rel}")
                done.pop()
                continue
            candidate = os.path.join(self.root, *done, part)
            if os.path.islink(candidate) and (parts or follow):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise ContextError(f"{rel}: too many levels of symbolic links")
                target = os.readlink(candidate)
                if target.startswith("/") or _climbs_out(posixpath.join(*done, target) if done else target):
                    shown = posixpath.join(*done, part)
                    raise ContextError(f"symlink {shown} -> {target} points outside the build context")
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def glob(self, pattern: str) -> list[tuple[str, str]]:
        """The sources a COPY pattern names (Go filepath.Match per component), sorted, without what
        .dockerignore excludes: (path as matched, path with symlinks resolved) pairs, both
        context-relative. Empty when nothing matches."""
        if _climbs_out(pattern):
            raise ContextError(f"forbidden path outside the build context: {pattern}")
        if not _has_glob(pattern):
            rel = self.resolve(pattern)
            if not os.path.lexists(self.path(rel)) or not self.included(rel):
                return []
            return [(posixpath.normpath(pattern).lstrip("/") or ".", rel)]
        parts = [p for p in posixpath.normpath("/" + pattern).split("/") if p]
        found = [""]
        for i, part in enumerate(parts):
            nxt: list[str] = []
            for base in found:
                if not _has_glob(part):
                    nxt.append(posixpath.join(base, part))
                    continue
                directory = self.path(self.resolve(base))
                if not os.path.isdir(directory):
                    continue
                regex = re.compile(pattern_regex(part), re.DOTALL)
                nxt += [posixpath.join(base, name) for name in sorted(os.listdir(directory)) if regex.match(name)]
            found = nxt if i == len(parts) - 1 else [p for p in nxt if os.path.isdir(self.path(self.resolve(p)))]
        pairs = []
        for matched in found:
            rel = self.resolve(matched)
            if os.path.lexists(self.path(rel)) and self.included(rel) and self.included(matched):
                pairs.append((matched, rel))
        return sorted(pairs)

    def walk(self, rel: str) -> Iterator[tuple[str, os.stat_result]]:
        """Included entries under directory `rel` (symlinks not followed), sorted, parents first.

        Yields context-relative paths. An excluded directory is entered only when an exception
        (`!pattern`) may re-include something below it."""
        try:
            names = sorted(os.listdir(self.path(rel)))
        except OSError as e:
            raise ContextError(f"cannot read {rel or '.'}: {e.strerror}") from None
        for name in names:
            child = posixpath.join(rel, name) if rel else name
            st = os.lstat(self.path(child))
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.included(child):
                yield child, st
                if is_dir:
                    yield from self.walk(child)
            elif is_dir and self.ignore.may_include_below(child):
                yield from self.walk(child)

    def checksum(self, rels: list[str]) -> str:
        """A digest of the sources' content and metadata (names, types, modes, sizes, link
        targets, file contents; not times): the cache key of a COPY/ADD."""
        h = hashlib.sha256()
        for rel in rels:
            st = os.stat(self.path(rel))
            h.update(f"{rel}\0".encode())
            self._hash_entry(h, rel, st, "")
            if stat.S_ISDIR(st.st_mode):
                for child, cst in self.walk(rel):
                    self._hash_entry(h, child, cst, posixpath.relpath(child, rel))
        return "sha256:" + h.hexdigest()

    def _hash_entry(self, h: hashlib._Hash, rel: str, st: os.stat_result, name: str) -> None:
        mode = st.st_mode
        extra = ""
        if stat.S_ISLNK(mode):
            extra = os.readlink(self.path(rel))
        elif stat.S_ISREG(mode):
            extra = self._file_digest(rel, st)
        h.update(f"{name}\0{mode:o}\0{st.st_size if stat.S_ISREG(mode) else 0}\0{extra}\0".encode())

    def _file_digest(self, rel: str, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            fh = hashlib.sha256()
            with open(self.path(rel), "rb") as f:
                while chunk := f.read(1 << 20):
                    fh.update(chunk)
            digest = self._hashes[key] = fh.hexdigest()
        return digest


def _has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _climbs_out(rel: str) -> bool:
    depth = 0
    for part in rel.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _remove(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def _read_stdin(stdin: BinaryIO | None) -> bytes:
    if stdin is None:
        raise ContextError("no standard input to read the context or Dockerfile from")
    chunks = []
    while chunk := stdin.read(1 << 20):  # a request body may return less than asked for
        chunks.append(chunk)
    return b"".join(chunks)


def _read_at_least(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := stream.read(n - len(data))):
        data += chunk
    return data


class _Prefixed(io.RawIOBase):
    """`head` (already read to sniff the format), then the rest of `stream`."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buf))
        buf[:len(data)] = data
        return len(data)


_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _is_archive(data: bytes) -> bool:
    if data.startswith(_MAGIC):
        return True
    return len(data) >= 512 and data[257:262] == b"ustar"


def extract_tar(stream: BinaryIO, dest: str) -> None:
    """Unpack a context tarball into `dest`, refusing anything that would escape it."""
    dest = os.path.realpath(dest)

    def safe(member: tarfile.TarInfo, _path: str) -> tarfile.TarInfo | None:
        name = posixpath.normpath(member.name.lstrip("/"))
        if name == ".":
            return None
        if _climbs_out(name):
            raise ContextError(f"context tarball: entry {member.name!r} is outside the context")
        parent = os.path.realpath(os.path.join(dest, posixpath.dirname(name)))
        if parent != dest and not parent.startswith(dest + "/"):
            raise ContextError(f"context tarball: entry {member.name!r} goes through a symlink out of the context")
        if member.ischr() or member.isblk():
            raise ContextError(f"context tarball: device node {member.name!r} refused")
        if member.islnk() and _climbs_out(member.linkname.lstrip("/")):
            raise ContextError(f"context tarball: hard link {member.name!r} points outside the context")
        changes: dict[str, object] = {"name": name}
        if member.islnk():
            changes["linkname"] = posixpath.normpath(member.linkname.lstrip("/"))
        return member.replace(**changes, deep=False)  # type: ignore[arg-type]

    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            tar.extractall(dest, numeric_owner=True, filter=safe)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise ContextError(f"context tarball: {e}") from None
