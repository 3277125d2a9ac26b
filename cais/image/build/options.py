"""What a build is asked to do, and how it fails (light: the CLI imports it without the builder)."""

from __future__ import annotations

from dataclasses import dataclass, field


class BuildError(Exception):
    """A build that failed; the message is one line for the user (file:line: problem)."""


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    cache_from: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    pull: bool = False  # --pull: fetch base images even when present (missing ones are always fetched)
    source_date_epoch: int | None = None
