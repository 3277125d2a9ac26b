"""What a build reports as it goes, and three ways of showing it.

The builder emits `Event`s; `PlainRenderer` prints docker's classic lines (for pipes and logs),
`TtyRenderer` a compact buildkit-like view with timings, and `docker_message` turns an event
into the JSON object docker's /build endpoint streams, so the `docker` CLI shows its usual output.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class StepStarted(Event):
    number: int  # 1-based over the whole build
    total: int
    text: str  # the instruction as written
    stage: str = ""


@dataclass(frozen=True)
class StepCached(Event):
    number: int


@dataclass(frozen=True)
class StepOutput(Event):
    number: int
    data: bytes


@dataclass(frozen=True)
class StepDone(Event):
    number: int
    state_id: str  # digest of the stage's config after the step
    seconds: float = 0.0


@dataclass(frozen=True)
class BuildWarning(Event):
    message: str


@dataclass(frozen=True)
class BuildDone(Event):
    image_id: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildFailed(Event):
    message: str


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PlainRenderer:
    """docker build's classic output, one line at a time."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet

    def __call__(self, event: Event) -> None:
        text = plain_text(event)
        if self.quiet and not isinstance(event, (BuildDone, BuildFailed)):
            return
        if self.quiet and isinstance(event, BuildDone):
            text = event.image_id + "\n"
        if text:
            self.out.write(text)
            self.out.flush()


def plain_text(event: Event) -> str:
    if isinstance(event, StepStarted):
        return f"Step {event.number}/{event.total} : {event.text}\n"
    if isinstance(event, StepCached):
        return " ---> Using cache\n"
    if isinstance(event, StepOutput):
        return event.data.decode("utf-8", "replace")
    if isinstance(event, StepDone):
        return f" ---> {short_id(event.state_id)}\n"
    if isinstance(event, BuildWarning):
        return f"[WARNING]: {event.message}\n"
    if isinstance(event, BuildDone):
        lines = [f"Successfully built {short_id(event.image_id)}\n"]
        lines += [f"Successfully tagged {tag}\n" for tag in event.tags]
        return "".join(lines)
    if isinstance(event, BuildFailed):
        return ""
    return ""


class TtyRenderer:
    """A compact view: one line per step, command output dimmed and indented, then the step's
    state (CACHED or DONE with its time)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self._started: dict[int, float] = {}
        self._cached: set[int] = set()
        self._partial = b""

    def __call__(self, event: Event) -> None:
        w = self.out.write
        if isinstance(event, StepStarted):
            self._started[event.number] = time.monotonic()
            stage = f"{event.stage} " if event.stage else ""
            w(f"\033[1m=> [{stage}{event.number}/{event.total}] {event.text}\033[0m\n")
        elif isinstance(event, StepCached):
            self._cached.add(event.number)
        elif isinstance(event, StepOutput):
            lines = (self._partial + event.data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                w("\033[2m   " + line.decode("utf-8", "replace") + "\033[0m\n")
        elif isinstance(event, StepDone):
            if self._partial:
                w("\033[2m   " + self._partial.decode("utf-8", "replace") + "\033[0m\n")
                self._partial = b""
            if event.number in self._cached:
                w("\033[34m   CACHED\033[0m\n")
            else:
                w(f"   DONE {time.monotonic() - self._started.get(event.number, time.monotonic()):.1f}s\n")
        elif isinstance(event, BuildWarning):
            w(f"\033[33mWARNING: {event.message}\033[0m\n")
        elif isinstance(event, BuildDone):
            w(f"=> writing image {event.image_id}\n")
            for tag in event.tags:
                w(f"=> naming to {tag}\n")
        self.out.flush()


def docker_message(event: Event) -> dict[str, Any] | None:
    """The JSON message docker's /build streams for an event (None: nothing to send)."""
    if isinstance(event, BuildDone):
        return {"aux": {"ID": event.image_id}}
    if isinstance(event, BuildFailed):
        return {"errorDetail": {"message": event.message}, "error": event.message}
    text = plain_text(event)
    return {"stream": text} if text else None


def docker_done_messages(event: BuildDone) -> list[dict[str, Any]]:
    """The messages docker sends after the image ID: the "Successfully ..." lines."""
    return [{"stream": line} for line in plain_text(event).splitlines(keepends=True)]
