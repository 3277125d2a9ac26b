"""Per-layer progress of pulls and pushes, and two ways to show it.

The client reports `ProgressEvent`s (Docker's wording: "Pulling fs layer", "Downloading",
"Download complete", "Already exists", "Pushing", "Layer already exists", "Mounted from X", …)
to a callback. `JSONProgress` turns them into Docker's JSON message stream (what
`POST /images/create` and `/images/{name}/push` answer); `CLIProgress` draws rich bars on a TTY
and plain lines, one per state change, elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

BAR_WIDTH = 50
_LAYER_ID = re.compile(r"^[0-9a-f]{12}$")
THROTTLE = 0.1  # seconds between two byte-progress messages of one layer


@dataclass(frozen=True)
class ProgressEvent:
    id: str  # a layer's short id (12 hex digits), a tag, or "" for messages about the whole image
    status: str
    current: int | None = None  # bytes done, for "Downloading"/"Pushing"
    total: int | None = None

    @property
    def is_transfer(self) -> bool:
        return self.current is not None


ProgressCallback = Callable[[ProgressEvent], None]


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12]


def human_size(n: float) -> str:
    """Docker's units.HumanSize: decimal units, four significant digits ('2.207MB')."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def progress_bar(current: int, total: int | None) -> str:
    """Docker's progress string: '[=====>      ]  1.2MB/3.4MB'."""
    if not total or total <= 0:
        return f"{human_size(current):>8}"
    filled = max(0, min(BAR_WIDTH, BAR_WIDTH * current // total))
    return f"[{'=' * filled}>{' ' * (BAR_WIDTH - filled)}] {human_size(current):>8}/{human_size(total)}"


class _Throttle:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def due(self, event: ProgressEvent) -> bool:
        if not event.is_transfer or event.current == event.total:
            return True
        now = time.monotonic()
        if now - self._last.get(event.id, 0.0) < THROTTLE:
            return False
        self._last[event.id] = now
        return True


class JSONProgress:
    """Docker's JSON progress stream: one JSON object per line, written to `write`."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self._throttle = _Throttle()

    def __call__(self, event: ProgressEvent) -> None:
        if not self._throttle.due(event):
            return
        message: dict[str, Any] = {"status": event.status}
        if event.is_transfer:
            message["progressDetail"] = {"current": event.current, **({"total": event.total} if event.total else {})}
            message["progress"] = progress_bar(event.current or 0, event.total)
        if event.id:
            message["id"] = event.id
        self._emit(message)

    def error(self, text: str) -> None:
        self._emit({"errorDetail": {"message": text}, "error": text})

    def _emit(self, message: dict[str, Any]) -> None:
        self._write(json.dumps(message).encode() + b"\r\n")


class CLIProgress:
    """Progress for a terminal: rich bars on a TTY, else one plain line per state change."""

    def __init__(self, stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._rich: Any = None
        self._tasks: dict[str, Any] = {}
        self._state: dict[str, str] = {}

    def __enter__(self) -> CLIProgress:
        if self._tty:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._rich = Progress(TextColumn("{task.fields[layer]}: {task.description:<18}"), BarColumn(),
                                  DownloadColumn(), console=Console(file=self._stream), transient=False)
            self._rich.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._rich is not None:
            self._draw(event)
        elif self._state.get(event.id) != event.status or not event.id:
            self._state[event.id] = event.status
            self._stream.write(f"{event.id}: {event.status}\n" if event.id else f"{event.status}\n")
            self._stream.flush()

    def _draw(self, event: ProgressEvent) -> None:
        if not _LAYER_ID.match(event.id):  # the whole image's messages: "latest: Pulling from …", "Digest: …"
            self._rich.console.print(f"{event.id}: {event.status}" if event.id else event.status)
            return
        task = self._tasks.get(event.id)
        if task is None:
            task = self._tasks[event.id] = self._rich.add_task(event.status, layer=event.id, total=event.total)
        fields: dict[str, Any] = {"description": event.status}
        if event.total:
            fields["total"] = event.total
        if event.current is not None:
            fields["completed"] = event.current
        elif event.status in ("Download complete", "Pull complete", "Pushed", "Already exists",
                              "Layer already exists") or event.status.startswith("Mounted from"):
            fields["completed"] = self._rich.tasks[task].total or 0
        self._rich.update(task, **fields)
