"""argparse the docker way: errors are one line and exit status 125, sizes and durations parsed."""

from __future__ import annotations

import argparse
import re

from cais.cli.main import CliError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, usage: str, description: str = "") -> None:
        super().__init__(prog=f"cais {prog}", usage=f"cais {prog} {usage}", description=description,
                         add_help=False, allow_abbrev=False)
        self.add_argument("--help", action="help", help="print usage")

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}\nSee '{self.prog} --help'.", 125)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise CliError(message or "", status)


def size(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[
        m.group(2).lower()])


def duration_ns(text: str) -> int:
    """Go durations: 1m30s, 500ms, 10s."""
    if text.strip() in ("0", ""):
        return 0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"invalid duration: '{text}'")
    scale = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
    return int(sum(float(n) * scale[u] for n, u in parts))


def cpus(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid argument \"{text}\" for \"--cpus\" flag") from None
    return int(value * 1e9)
