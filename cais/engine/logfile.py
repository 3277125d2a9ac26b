"""What json-file and local logs share, as docker's loggerutils: messages cut from a stream, the
rotating file with gzip-compressed old files, and opening those files again for reading.

Docker's copier cuts a stream into lines; a line longer than 16 KiB (or the unterminated rest at
end of stream) becomes partial messages that share an id, an ordinal and the first part's time.

Rotation happens before a write once the file holds `max_size` bytes or more (so a file may pass
max-size by one entry, as docker's): FILE → FILE.1 → … → FILE.(max_file-1), the oldest removed.
With compression FILE.1 is then gzipped to FILE.1.gz in a thread (rotated files are FILE.N.gz),
the gzip header's extra field holding docker's `{"lastTime": …}` so readers can skip whole files
older than `since`. A complete copy exists at every moment: the .gz is written aside and renamed,
then FILE.1 is removed; a FILE.1 left by a crash is compressed when the writer opens again.
The writer rotates holding an exclusive flock of FILE, readers list and open the files holding a
shared one (`snapshot`): they never see a rotation half done.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import BinaryIO, NamedTuple

PARTIAL_MAX = 16 * 1024  # docker's copier buffer: longer lines become partial messages
_SPOOL = 8 * 1024 * 1024  # a decompressed rotated file bigger than this goes to a temporary file


class Partial(NamedTuple):
    id: str
    ordinal: int
    last: bool


class Message(NamedTuple):
    stream: str
    time_ns: int
    line: bytes  # without its newline
    partial: Partial | None = None
    attrs: tuple[tuple[str, str], ...] = ()  # docker's extra attributes (log-opt labels, env, tag), sorted

    @property
    def text(self) -> bytes:
        """The bytes `logs` shows: the line and, unless a non-final part, its newline."""
        return self.line + b"\n" if self.partial is None or self.partial.last else self.line


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text: one tuple, threads see a whole pair


def utc_seconds(sec: int) -> str:
    """A unix second as "YYYY-MM-DDTHH:MM:SS", UTC (the last one asked is kept)."""
    global _second
    cached_sec, text = _second
    if cached_sec != sec:
        text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (sec, text)
    return text


def rfc3339(ns: int, *, trim: bool = False) -> str:
    """UTC RFC 3339 with nanoseconds, fixed width (docker's logs -t) or trimmed (Go's RFC3339Nano).
    The date part is formatted once a second: a log writes and reads many entries a second."""
    sec, frac = divmod(ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0") if trim else f"{frac:09d}"
    return f"{utc_seconds(sec)}.{digits}Z" if digits else f"{utc_seconds(sec)}Z"


def rfc3339_fixed(ns: int) -> bytes:
    """rfc3339(ns) as bytes, fixed width (`logs -t`)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return b"%s.%09dZ" % (utc_seconds(sec).encode(), frac)


class _StreamState:
    __slots__ = ("buf", "partial_id", "ordinal", "first_ns")

    def __init__(self) -> None:
        self.buf, self.partial_id, self.ordinal, self.first_ns = b"", "", 0, 0


class Copier:
    """Cuts each stream's bytes into messages, as docker's logger.Copier, and hands them to `emit`;
    or, with `emit_lines`, the whole lines of a write at once (stream, lines, each line's time):
    the common case — no long line under way — without a Message an entry."""

    def __init__(self, emit: Callable[[Message], None],
                 emit_lines: Callable[[str, list[bytes], list[int]], None] | None = None) -> None:
        self.emit = emit
        self.emit_lines = emit_lines
        self.streams: dict[str, _StreamState] = {}

    def write(self, stream: str, data: bytes) -> None:
        state = self.streams.setdefault(stream, _StreamState())
        buf = state.buf + data
        if self.emit_lines is not None and not state.partial_id:
            lines = buf.split(b"\n")
            rest = lines.pop()
            if len(rest) < PARTIAL_MAX and (not lines or max(map(len, lines)) < PARTIAL_MAX):
                if lines:
                    now = time.time_ns
                    self.emit_lines(stream, lines, [now() for _ in lines])  # a time a line, as docker's
                state.buf = rest
                return
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + PARTIAL_MAX)  # docker's 16 KiB buffer holds no more
            if nl >= 0:
                self._send(stream, state, buf[start:nl], last=True)
                start = nl + 1
            elif len(buf) - start >= PARTIAL_MAX:
                self._send(stream, state, buf[start:start + PARTIAL_MAX], last=False)
                start += PARTIAL_MAX
            else:
                break
        state.buf = buf[start:]

    def flush(self) -> None:
        """End of the streams: what is left of a line is logged as a partial message."""
        for stream, state in self.streams.items():
            if state.buf:
                self._send(stream, state, state.buf, last=False)
                state.buf = b""

    def _send(self, stream: str, state: _StreamState, line: bytes, *, last: bool) -> None:
        now = time.time_ns()
        if last and not state.partial_id:
            self.emit(Message(stream, now, line))
            return
        if not state.partial_id:
            import secrets
            state.partial_id, state.ordinal, state.first_ns = secrets.token_hex(32), 0, now
        state.ordinal += 1
        self.emit(Message(stream, state.first_ns, line, Partial(state.partial_id, state.ordinal, last)))
        if last:
            state.partial_id = ""


class RotatingFile:
    def __init__(self, path: str, max_size: int | None, max_file: int, compress: bool) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(max_file, 1)
        self.compress = compress and self.max_file > 1
        self._compressing: threading.Thread | None = None
        self._last_ns = 0
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._file = self._open(os.O_APPEND)
        self._size = os.fstat(self._file).st_size
        if self.compress and os.path.exists(f"{path}.1"):  # left uncompressed by a crash
            self._compress_in_background(int(os.stat(f"{path}.1").st_mtime * 1e9))

    def _open(self, flag: int) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flag, 0o640)

    def write(self, record: bytes, time_ns: int) -> None:
        self.write_many([record], [time_ns])

    def write_many(self, records: list[bytes], times: list[int]) -> None:
        """Entries and their times, in order, in as few writes as rotation allows: one a batch."""
        if not records:
            return
        total = sum(map(len, records))
        if self.max_size is None or self._size + total - len(records[-1]) < self.max_size:
            self._write(records)  # no rotation before any of them
            self._size += total
            self._last_ns = times[-1]
            return
        batch: list[bytes] = []
        for record, time_ns in zip(records, times, strict=True):
            if self._size >= self.max_size:
                self._write(batch)
                batch = []
                self._rotate()
            batch.append(record)
            self._size += len(record)
            self._last_ns = time_ns
        self._write(batch)

    def _write(self, batch: list[bytes]) -> None:
        view = memoryview(b"".join(batch))
        while view:
            view = view[os.write(self._file, view):]

    def _rotate(self) -> None:
        old = self._file
        _lock_briefly(old)  # readers list the files under a shared lock (snapshot)
        try:
            self._wait_compression()
            if self.max_file < 2:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # a new inode: followers of the old one see the rotation
            else:
                ext = ".gz" if self.compress else ""
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}.{self.max_file - 1}{ext}")
                for n in range(self.max_file - 1, 1, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(f"{self.path}.{n - 1}{ext}", f"{self.path}.{n}{ext}")
                os.rename(self.path, f"{self.path}.1")
            self._file = self._open(os.O_TRUNC)
        finally:
            os.close(old)
        self._size = 0
        if self.compress:
            self._compress_in_background(self._last_ns)

    def _compress_in_background(self, last_ns: int) -> None:
        self._compressing = threading.Thread(target=compress_file, args=(f"{self.path}.1", last_ns),
                                             name="cais-log-compress", daemon=True)
        self._compressing.start()

    def _wait_compression(self) -> None:
        if self._compressing is not None:
            self._compressing.join()
            self._compressing = None

    def close(self) -> None:
        os.close(self._file)
        self._wait_compression()


def _lock_briefly(fd: int, patience: float = 0.2) -> None:
    """An exclusive flock, waited for `patience` seconds at most: a reader holds its shared lock
    for a few opens, and a reader stopped while holding it must not stall every container's output
    (the rotation then goes ahead unlocked; that reader may miss a file)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)


def compress_file(path: str, last_ns: int) -> None:
    """PATH → PATH.gz with docker's header (extra = {"lastTime": …}, mtime 0, OS 255), then remove
    PATH. If it fails (a full disk), PATH stays as it is, readable, and the failure is logged."""
    extra = json.dumps({"lastTime": rfc3339(last_ns, trim=True)}, separators=(",", ":")).encode()
    tmp = f"{path}.gz.tmp"
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\x00\xff" + struct.pack("<H", len(extra)) + extra)
            deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            crc = size = 0
            while chunk := src.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                dst.write(deflate.compress(chunk))
            dst.write(deflate.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF))
            os.fchmod(dst.fileno(), 0o640)
        os.rename(tmp, f"{path}.gz")
        os.unlink(path)
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            logging.getLogger("cais.logs").warning("compressing %s failed: %s", path, e)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def gzip_last_time(f: BinaryIO) -> str | None:
    """The `lastTime` docker keeps in a rotated file's gzip header, if there is one."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:2] != b"\x1f\x8b" or not head[3] & 4:
        return None
    extra = f.read(struct.unpack("<H", head[10:12])[0])
    with contextlib.suppress(ValueError, AttributeError):
        return json.loads(extra).get("lastTime")
    return None


def gzip_size(f: BinaryIO) -> int | None:
    """The uncompressed size (mod 2**32) a gzip file's trailer records."""
    try:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]
    except (OSError, struct.error):
        return None


def _rotated_names(path: str) -> list[str]:
    found = []
    n = 1
    while True:
        plain, packed = f"{path}.{n}", f"{path}.{n}.gz"
        if os.path.exists(plain):
            found.append(plain)
        elif os.path.exists(packed):
            found.append(packed)
        else:
            break
        n += 1
    return found[::-1]


def snapshot(path: str) -> tuple[BinaryIO, list[tuple[str, BinaryIO]]] | None:
    """The current file and the rotated ones (FILE.N or FILE.N.gz, oldest first), opened under a
    shared lock of the current file — the writer rotates under an exclusive one — so the set is
    whole and consistent whatever the writer does next. None if there is no log; an empty BytesIO
    for the current file if a writer died between a rotation's rename and the new file."""
    deadline = time.monotonic() + 1
    while True:
        try:
            current = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            if not any(os.path.exists(f"{path}.{ext}") for ext in ("1", "1.gz")):
                return None
            if time.monotonic() > deadline:
                found = []
                for name in _rotated_names(path):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((name, open(name, "rb")))  # noqa: SIM115
                return io.BytesIO(), found  # type: ignore[return-value]
            time.sleep(0.01)  # between a rotation's rename and the new file
            continue
        rotated: list[tuple[str, BinaryIO]] = []
        fcntl.flock(current.fileno(), fcntl.LOCK_SH)
        try:
            if os.stat(path).st_ino == os.fstat(current.fileno()).st_ino:  # not rotated while we waited
                for name in _rotated_names(path):
                    rotated.append((name, open(name, "rb")))  # noqa: SIM115
                return current, rotated
        except FileNotFoundError:  # compressed meanwhile
            pass
        finally:
            fcntl.flock(current.fileno(), fcntl.LOCK_UN)
        for _, f in rotated:
            f.close()
        current.close()


def readable_copy(name: str, f: BinaryIO) -> BinaryIO:
    """A seekable reader over a rotated file, decompressed if it is gzipped (a damaged archive
    gives what could be decompressed rather than failing every `logs`)."""
    if not name.endswith(".gz"):
        f.seek(0)
        return f
    import gzip
    import tempfile
    out = tempfile.SpooledTemporaryFile(_SPOOL)  # noqa: SIM115 - the caller closes it
    f.seek(0)
    with gzip.GzipFile(fileobj=f, mode="rb") as src, contextlib.suppress(EOFError, zlib.error, gzip.BadGzipFile):
        while chunk := src.read(1 << 20):
            out.write(chunk)
    out.seek(0)
    return out  # type: ignore[return-value]


def file_size(f: BinaryIO) -> int:
    pos = f.tell()
    size = f.seek(0, os.SEEK_END)
    f.seek(pos)
    return size

