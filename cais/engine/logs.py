"""Container logs in docker's json-file format, with max-size/max-file rotation.

One JSON object per line: {"log": "text\\n", "stream": "stdout", "time": "RFC3339Nano"}.
`local` uses the same format with docker's local-driver defaults (20 MB × 5 files, always rotated);
`none` keeps nothing. The supervisor writes; the engine reads (tail, since/until, follow).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from cais.engine.errors import InvalidParameter

PARTIAL_MAX = 16 * 1024  # docker splits lines longer than this into partial messages
_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)
DRIVERS = ("json-file", "local", "none")


def parse_size(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise InvalidParameter(f"invalid size: {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def log_settings(log_config: dict | None) -> dict | None:
    """Validate HostConfig.LogConfig; return the supervisor's settings (None for the `none` driver)."""
    cfg = log_config or {}
    driver = cfg.get("Type") or "json-file"
    opts = cfg.get("Config") or {}
    if driver not in DRIVERS:
        raise InvalidParameter(f"logging driver {driver!r} is not supported (use json-file, local or none)")
    if driver == "none":
        return None
    known = {"max-size", "max-file", "compress", "labels", "env", "tag", "mode", "max-buffer-size"}
    for key in opts:
        if key not in known:
            raise InvalidParameter(f"unknown log opt '{key}' for {driver} log driver")
    max_size = parse_size(opts["max-size"]) if opts.get("max-size") not in (None, "", "-1") else None
    max_file = int(opts.get("max-file") or 1)
    if driver == "local":
        max_size = max_size or 20 * 1024**2
        max_file = int(opts.get("max-file") or 5)
    if max_file < 1:
        raise InvalidParameter("max-file cannot be less than 1")
    if max_file > 1 and max_size is None:
        raise InvalidParameter("max-file cannot be set without max-size")
    return {"driver": driver, "max_size": max_size, "max_file": max_file}


def timestamp(t: float | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, as docker writes it."""
    ns = time.time_ns() if t is None else int(t * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_timestamp(text: str) -> float:
    """RFC 3339 (any fraction) or unix seconds (docker's since/until) → unix seconds."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        return float(text)
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not m:
        raise InvalidParameter(f"invalid timestamp: {text!r}")
    base = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    return base.timestamp() + float("0" + (m.group(2) or ".0"))


class JsonFileWriter:
    def __init__(self, path: str, max_size: int | None = None, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._size = self._file.tell()

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            self._emit(stream, buf[: nl + 1])
            buf = buf[nl + 1 :]
        while len(buf) >= PARTIAL_MAX:
            self._emit(stream, buf[:PARTIAL_MAX])
            buf = buf[PARTIAL_MAX:]
        self._partial[stream] = buf

    def _emit(self, stream: str, line: bytes) -> None:
        entry = json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream, "time": timestamp()},
                           ensure_ascii=False).encode() + b"\n"
        if self.max_size is not None and self._size + len(entry) > self.max_size and self._size > 0:
            self._rotate()
        self._file.write(entry)
        self._size += len(entry)

    def _rotate(self) -> None:
        self._file.close()
        if self.max_file > 1:
            for n in range(self.max_file - 1, 0, -1):
                src = self.path if n == 1 else f"{self.path}.{n - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{n}")
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        else:
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._emit(stream, rest)
        self._partial = {"stdout": b"", "stderr": b""}
        self._file.close()


def _files(path: str) -> list[str]:
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), path]


def _entries(f) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    for line in f:
        if not line.endswith(b"\n"):
            f.seek(-len(line), os.SEEK_CUR)  # a line being written: read it next time
            return
        with contextlib.suppress(ValueError):
            yield json.loads(line)


def read(path: str, *, stdout: bool = True, stderr: bool = True, since: float | None = None,
         until: float | None = None, tail: int | None = None, follow: bool = False,
         running: Callable[[], bool] = lambda: False, poll: float = 0.05) -> Iterator[tuple[str, str, bytes]]:
    """Yield (stream, time, bytes) entries; with follow, keep reading while `running()` is true."""
    def wanted(entry: dict) -> bool:
        stream = entry.get("stream")
        if (stream == "stdout" and not stdout) or (stream == "stderr" and not stderr):
            return False
        if since is None and until is None:
            return True
        t = parse_timestamp(entry.get("time", "0"))
        return (since is None or t > since) and (until is None or t <= until)

    def out(entry: dict) -> tuple[str, str, bytes]:
        return entry.get("stream", "stdout"), entry.get("time", ""), entry.get("log", "").encode()

    if not os.path.exists(path):
        return
    backlog: list[tuple[str, str, bytes]] = []
    for name in _files(path)[:-1]:
        with contextlib.suppress(FileNotFoundError), open(name, "rb") as f:
            backlog.extend(out(e) for e in _entries(f) if wanted(e))
    f = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        backlog.extend(out(e) for e in _entries(f) if wanted(e))
        if tail is not None and tail >= 0:
            backlog = backlog[len(backlog) - tail:] if tail else []
        yield from backlog
        if not follow:
            return
        inode = os.fstat(f.fileno()).st_ino
        while True:
            alive = running()
            got = False
            for e in _entries(f):
                got = True
                if wanted(e):
                    yield out(e)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino != inode:  # rotated: finish the old file, then follow the new one
                    for e in _entries(f):
                        if wanted(e):
                            yield out(e)
                    f.close()
                    f = open(path, "rb")  # noqa: SIM115
                    inode = os.fstat(f.fileno()).st_ino
                    continue
            if not alive and not got:
                return
            if until is not None and time.time() > until:
                return
            if not got:
                time.sleep(poll)
    finally:
        f.close()
