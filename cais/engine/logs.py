"""Container logs: the `json-file`, `local` and `none` drivers, their options, and reading them back.

The supervisor writes (`LogWriter`: docker's copier, a rotating file, the driver's format); the
engine reads (`read`: tail, since/until, stdout/stderr, follow) across rotated and compressed
files. Formats: `jsonfilelog.py` (json-file) and `locallog.py` (local, protobuf frames); rotation,
compression and partial lines: `logfile.py`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cais.engine import jsonfilelog, locallog
from cais.engine.errors import InvalidParameter
from cais.engine.logfile import (
    Copier,
    Message,
    RotatingFile,
    file_size,
    gzip_last_time,
    gzip_size,
    readable_copy,
    rfc3339,
    snapshot,
)

DRIVERS = ("json-file", "local", "none")
_FORMATS = {"json-file": jsonfilelog, "local": locallog}
# keys docker's drivers accept; mode and max-buffer-size are the daemon's, valid for every driver
_OPTS = {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag", "mode",
         "max-buffer-size"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_TRUE, _FALSE = {"1", "t", "T", "TRUE", "true", "True"}, {"0", "f", "F", "FALSE", "false", "False"}
log = logging.getLogger("cais.logs")


def parse_size(text: str) -> int:
    """docker's units.FromHumanSize: decimal multiples (1k = 1000), an optional i and b."""
    m = _SIZE.match(text)
    if not m:
        raise InvalidParameter(f"invalid size: '{text}'")
    return int(float(m.group(1)) * 1000 ** (" kmgtp".index((m.group(2) or " ").lower())))


def _parse_bool(key: str, text: str) -> bool:
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InvalidParameter(f"invalid boolean value for {key}: {text!r}")


def _parse_int(key: str, text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidParameter(f"invalid value for {key}: {text!r} is not an integer")
    return int(text)


def log_settings(log_config: dict | None) -> dict | None:
    """Validate HostConfig.LogConfig as docker's drivers do; return the supervisor's settings
    ({driver, max_size, max_file, compress}; None for the `none` driver)."""
    cfg = log_config or {}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("Type") or "", str):
        raise InvalidParameter("LogConfig must be an object with a string Type")
    driver = cfg.get("Type") or "json-file"
    opts = cfg.get("Config") or {}
    if driver not in DRIVERS:
        raise InvalidParameter(f"logging driver {driver!r} is not supported (use json-file, local or none)")
    if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
        raise InvalidParameter("LogConfig.Config must map option names to strings")
    for key in opts:
        if key not in _OPTS:
            raise InvalidParameter(f"unknown log opt '{key}' for {driver} log driver")
    if driver == "none":
        return None
    _check_attr_opts(opts)
    if driver == "local":
        return _local_settings(opts)
    max_size = None
    if "max-size" in opts:
        max_size = parse_size(opts["max-size"])
        if max_size <= 0:
            raise InvalidParameter("max-size must be a positive number")
    max_file = _parse_int("max-file", opts["max-file"]) if "max-file" in opts else 1
    if max_file < 1:
        raise InvalidParameter("max-file cannot be less than 1")
    compress = _parse_bool("compress", opts["compress"]) if "compress" in opts else False
    if compress and (max_file == 1 or max_size is None):
        raise InvalidParameter("compress cannot be true when max-file is less than 2 or max-size is not set")
    return {"driver": driver, "max_size": max_size, "max_file": max_file, "compress": compress}


_TAG_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def _tag_fields(record: dict) -> dict[str, str]:
    """The fields a `tag` template may name (docker's logger.Info)."""
    import socket
    return {"ID": record["Id"][:12], "FullID": record["Id"], "Name": record["Name"].lstrip("/"),
            "ImageID": record["Image"].split(":")[-1][:12], "ImageFullID": record["Image"],
            "ImageName": record["Config"].get("Image") or "", "DaemonName": "docker",
            "Hostname": socket.gethostname()}


def _check_attr_opts(opts: dict) -> None:
    """`tag` takes docker's template fields ({{.ID}}, {{.Name}}, …); the -regex options, regexes."""
    known = {"ID", "FullID", "Name", "ImageID", "ImageFullID", "ImageName", "DaemonName", "Hostname"}
    rest = _TAG_FIELD.sub(lambda m: "" if m.group(1) in known else "{{", opts.get("tag", ""))
    if "{{" in rest or "}}" in rest:
        raise InvalidParameter(f"invalid tag template {opts['tag']!r}: use {{{{.Name}}}}, {{{{.ID}}}}, "
                               "{{.FullID}}, {{.ImageName}}, {{.ImageID}}, {{.ImageFullID}}, {{.DaemonName}} "
                               "or {{.Hostname}}")
    for key in ("labels-regex", "env-regex"):
        try:
            re.compile(opts.get(key, ""))
        except re.error as e:
            raise InvalidParameter(f"invalid {key} {opts[key]!r}: {e}") from None


def log_attrs(record: dict) -> tuple[tuple[str, str], ...]:
    """docker's extra attributes of each entry (logger.Info.ExtraAttributes and the tag): the
    labels and env variables the options name or match, sorted by name."""
    opts = (record["HostConfig"].get("LogConfig") or {}).get("Config") or {}
    labels = record["Config"].get("Labels") or {}
    env = dict(e.split("=", 1) for e in record["Config"].get("Env") or [] if "=" in e)
    attrs: dict[str, str] = {}
    for option, source in (("labels", labels), ("env", env)):
        for key in opts.get(option, "").split(",") if opts.get(option) else ():
            if key in source:
                attrs[key] = source[key]
        if opts.get(f"{option}-regex"):
            pattern = re.compile(opts[f"{option}-regex"])
            attrs.update({k: v for k, v in source.items() if pattern.search(k)})
    if opts.get("tag"):
        fields = _tag_fields(record)
        attrs["tag"] = _TAG_FIELD.sub(lambda m: fields[m.group(1)], opts["tag"])
    return tuple(sorted(attrs.items()))


def details(attrs: tuple[tuple[str, str], ...]) -> bytes:
    """docker's `logs --details` prefix: k=v pairs, query-escaped, comma-separated, then a space."""
    from urllib.parse import quote_plus
    return ",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in attrs).encode() + b" "


def _local_settings(opts: dict) -> dict:
    """docker's local driver: 20 MB × 5 files, compressed, unless told otherwise."""
    max_size, max_file, compress = 20 * 1024 * 1024, 5, True
    if "max-size" in opts:
        try:
            max_size = parse_size(opts["max-size"])
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid value for max-size: {opts['max-size']}: {e}") from None
    if "max-file" in opts:
        max_file = _parse_int("max-file", opts["max-file"])
    if "compress" in opts:
        compress = _parse_bool("compress", opts["compress"])
    if max_file < 0:
        raise InvalidParameter("max-file must not be negative")
    if compress and max_file <= 1:
        raise InvalidParameter("compression cannot be enabled when max file count is 1")
    return {"driver": "local", "max_size": max_size or None, "max_file": max(max_file, 1), "compress": compress}


def merge_log_config(cfg: object, default: dict) -> object:
    """A container's LogConfig with the daemon's default filled in, as dockerd: no type means the
    default driver, and a container of the default driver gets the default options it does not set."""
    if not isinstance(cfg, dict | None) or not isinstance((cfg or {}).get("Config") or {}, dict):
        return cfg  # type: ignore[return-value]  # as it is: log_settings says what is wrong with it
    cfg = cfg or {}
    merged = {"Type": cfg.get("Type") or default["Type"], "Config": dict(cfg.get("Config") or {})}
    if merged["Type"] == default["Type"]:
        for key, value in default.get("Config", {}).items():
            merged["Config"].setdefault(key, value)
    return merged


def readable(record: dict) -> bool:
    """Whether the container's driver keeps a log to read back (all but `none`)."""
    return ((record["HostConfig"].get("LogConfig") or {}).get("Type") or "json-file") != "none"


def log_file(container_dir: str, cid: str, driver: str) -> str:
    """Where a driver keeps a container's log (docker's places); "" for `none`."""
    if driver == "local":
        return os.path.join(container_dir, "local-logs", "container.log")
    return "" if driver == "none" else os.path.join(container_dir, f"{cid}-json.log")


class LogWriter:
    """The supervisor's end: bytes of stdout/stderr in, entries of the driver's format out."""

    def __init__(self, path: str, settings: dict) -> None:
        fmt = _FORMATS[settings.get("driver", "json-file")]
        encode = fmt.encode
        self._file = RotatingFile(path, settings.get("max_size"), settings.get("max_file", 1),
                                  settings.get("compress", False))
        attrs = tuple(tuple(pair) for pair in settings.get("attrs") or ())
        self._records: list[bytes] = []  # the entries of one write, written together, and their times
        self._times: list[int] = []
        records, times = self._records, self._times

        def one(msg: Message) -> None:
            records.append(encode(msg._replace(attrs=attrs) if attrs else msg))
            times.append(msg.time_ns)

        def lines(stream: str, cut: list[bytes], stamps: list[int]) -> None:
            records.extend(fmt.encode_lines(stream, cut, stamps))
            times.extend(stamps)
        self._copier = Copier(one, None if attrs else lines)

    def write(self, stream: str, data: bytes) -> None:
        try:
            self._copier.write(stream, data)
            self._file.write_many(self._records, self._times)
        finally:
            self._records.clear()
            self._times.clear()

    def close(self) -> None:
        try:
            self._copier.flush()
            self._file.write_many(self._records, self._times)
        finally:
            self._records.clear()
            self._times.clear()
            self._file.close()


def timestamp(t: float | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, as docker writes it."""
    return rfc3339(time.time_ns() if t is None else int(t * 1e9))


def parse_timestamp(text: str) -> float:
    """RFC 3339 (any fraction) or unix seconds (docker's since/until) → unix seconds."""
    return parse_timestamp_ns(text) / 1e9


def parse_timestamp_ns(text: str) -> int:
    """RFC 3339 (any fraction, any offset) or unix seconds with up to 9 decimals → unix nanoseconds."""
    text = text.strip()
    m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", text)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    try:
        return jsonfilelog.parse_time_ns(text if re.search(r"(Z|[+-]\d\d:\d\d)$", text) else text + "Z")
    except ValueError:
        raise InvalidParameter(f"invalid timestamp: {text!r}") from None


def _decode(fmt, f: BinaryIO, end: int | None = None, since: int | None = None):  # type: ignore[no-untyped-def]
    """`since` lets json-file skip older lines unread (local's are cheap to read)."""
    try:
        yield from fmt.decode(f, end, since) if since is not None and fmt is jsonfilelog else fmt.decode(f, end)
    except locallog.CorruptLog as e:
        log.warning("%s: %s; the rest of this file is skipped", getattr(f, "name", "log"), e)
        f.seek(0, os.SEEK_END)


Entry = tuple[str, int, bytes]  # (stream, unix ns, bytes)
# how far out of time order entries may be in a file: dockerd's two copiers stamp, then take turns to write
DISORDER = 1_000_000_000
BATCH, BATCH_BYTES = 4096, 1 << 20  # handed over at once: the API frames and writes them in one go


def read(path: str, driver: str = "json-file", **kw) -> Iterator[Entry]:  # type: ignore[no-untyped-def]
    """Yield (stream, unix ns, bytes) entries, oldest first (`read_batches`' entries one by one)."""
    for batch in read_batches(path, driver, **kw):
        yield from batch


def read_batches(path: str, driver: str = "json-file", *, stdout: bool = True, stderr: bool = True,
                 since: int | None = None, until: int | None = None, tail: int | None = None,
                 follow: bool = False, running: Callable[[], bool] = lambda: False, poll: float = 0.05,
                 with_details: bool = False) -> Iterator[list[Entry]]:
    """Lists of (stream, unix ns, bytes) entries, oldest first; since/until in unix ns. As docker:
    `tail` counts entries of both streams, then since/until and the stream selection apply;
    `with_details` puts each entry's attributes first (`logs --details`).
    With follow, keep reading while `running()` is true, through every file a rotation made; a
    batch ends where the file did, so a follower gets what is written without waiting for more."""
    fmt = _FORMATS[driver]
    snap = snapshot(path)
    if snap is None:
        return
    current, rotated = snap
    opened: list[BinaryIO] = [current, *(f for _, f in rotated)]
    state: dict = {"last_ns": None, "done": False}  # the last entry read (shown or not); past `until`

    def shown(messages: Iterator) -> Iterator[list[Entry]]:
        """The entries to show, in batches (BATCH entries or BATCH_BYTES bytes at most)."""
        while True:
            chunk: list = []
            held = 0
            while len(chunk) < BATCH and held < BATCH_BYTES and (more := list(itertools.islice(messages, 256))):
                chunk += more
                held += sum(len(m.line) for m in more)
            if not chunk:
                return
            state["last_ns"] = chunk[-1].time_ns
            if until is not None:  # the first entry past `until` ends it all
                before = list(itertools.takewhile(lambda m: m.time_ns <= until, chunk))
                if len(before) < len(chunk):
                    chunk, state["done"] = before, True
            if since is not None or not (stdout and stderr):
                chunk = [m for m in chunk if (since is None or m.time_ns >= since)
                         and (stdout if m.stream == "stdout" else stderr)]
            batch = [(m.stream, m.time_ns, m.line + b"\n" if m.partial is None or m.partial.last else m.line)
                     for m in chunk]
            if with_details:
                batch = [(stream, ns, details(m.attrs) + text) for (stream, ns, text), m in zip(batch, chunk, strict=True)]
            if batch:
                yield batch
            if state["done"]:
                return

    try:
        size = file_size(current)
        yield from shown(_backlog(fmt, current, size, rotated, since, tail, opened, not follow))
        if state["done"] or not follow or isinstance(current, io.BytesIO):  # BytesIO: see snapshot()
            return
        if state["last_ns"] is None and size:  # --tail 0: the last entry still tells the file apart
            current.seek(fmt.tail_offset(current, size, 1)[0])
            state["last_ns"] = next((m.time_ns for m in _decode(fmt, current, size)), None)
            current.seek(size)
        inode = os.fstat(current.fileno()).st_ino
        while True:
            alive = running()
            before = current.tell()
            yield from shown(_decode(fmt, current))
            got = current.tell() != before
            with contextlib.suppress(FileNotFoundError):
                if not state["done"] and os.stat(path).st_ino != inode:  # rotated: read `current` to its end
                    yield from shown(_decode(fmt, current))
                    old_inode, old_size = inode, current.tell()
                    snap = snapshot(path)
                    if snap is None:
                        return
                    current, rotated = snap
                    opened += [current, *(f for _, f in rotated)]
                    inode = os.fstat(current.fileno()).st_ino
                    for f in _written_after(rotated, old_inode, old_size, state["last_ns"], opened):
                        yield from shown(_decode(fmt, f))
                    continue
            if state["done"] or (not alive and not got):
                return
            if until is not None and time.time_ns() > until:
                return
            if not got:
                time.sleep(poll)
    finally:
        for f in opened:
            f.close()


def _written_after(rotated: list[tuple[str, BinaryIO]], old_inode: int, old_size: int, last_ns: int | None,
                   opened: list[BinaryIO]) -> Iterator[BinaryIO]:
    """The rotated files written after the one a follower just finished (several rotations may
    have happened between two looks), oldest first. That file is known by its inode or, once
    compressed, by the size and last entry's time in its gzip trailer and header."""
    newer = []
    for name, f in reversed(rotated):  # newest first
        if name.endswith(".gz"):
            if gzip_size(f) == old_size & 0xFFFFFFFF and (
                    last_ns is None or gzip_last_time(f) == rfc3339(last_ns, trim=True)):
                break
        elif os.fstat(f.fileno()).st_ino == old_inode:
            break
        newer.append((name, f))
    for name, f in reversed(newer):
        copy = readable_copy(name, f)
        if copy is not f:
            opened.append(copy)
        yield copy


def _backlog(fmt, current: BinaryIO, size: int, rotated: list[tuple[str, BinaryIO]],  # type: ignore[no-untyped-def]
             since: int | None, tail: int | None, opened: list[BinaryIO], skip: bool):
    """The entries already written: the rotated files' then the current file's up to `size`;
    with `skip`, those before `since` may be left out unread (a follower reads them all: it needs
    the last entry's time)."""
    unread = since if skip else None
    def newest_first() -> Iterator[BinaryIO]:
        for name, f in reversed(rotated):
            if name.endswith(".gz") and since is not None:
                last = gzip_last_time(f)
                with contextlib.suppress(ValueError):
                    if last and jsonfilelog.parse_time_ns(last) < since:
                        return  # this one and every older file end before `since`
            copy = readable_copy(name, f)
            if copy is not f:
                opened.append(copy)
            yield copy

    if tail == 0:
        current.seek(size)
        return
    if (tail is None or tail < 0) and since is None:
        for f in reversed(list(newest_first())):
            yield from _decode(fmt, f, None, unread)
        yield from _decode(fmt, current, size, unread)
        return
    chunks: list[tuple[BinaryIO, int, int | None]] = []
    if tail is None or tail < 0:  # since: from the file holding its first entry, where that entry is
        for f, end in itertools.chain([(current, size)], ((r, None) for r in newest_first())):
            start = fmt.since_offset(f, size if f is current else file_size(f), since - DISORDER)
            chunks.append((f, start, end))
            if start > 0:  # the file starts older: so do all the files before it
                break
    else:
        want = tail
        for f, end in itertools.chain([(current, size)], ((r, None) for r in newest_first())):
            start, found = fmt.tail_offset(f, size if f is current else file_size(f), want)
            chunks.append((f, start, end))
            want -= found
            if want <= 0:
                break
    for f, start, end in reversed(chunks):
        f.seek(start)
        yield from _decode(fmt, f, end, unread)
    current.seek(size)
