""".dockerignore: docker's pattern rules (moby/patternmatcher).

Each line is a pattern in Go's `filepath.Match` syntax (`*`, `?`, `[...]`, `\\` escapes)
extended with `**` (any number of directories, including none). Lines starting with `#` are
comments; `!` re-includes what an earlier pattern excluded; patterns are cleaned like
`filepath.Clean` (so `./a/`, `/a` and `a` are the same). The last matching pattern wins, and a
path is excluded when it or one of its parent directories is.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

_REGEX_SPECIALS = set(".+()|{}$^")


def read_patterns(text: str) -> list[str]:
    patterns = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if pattern.startswith("//"):
                pattern = "/" + pattern.lstrip("/")
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def pattern_regex(pattern: str) -> str:
    """Translate one cleaned pattern into an anchored regular expression, as patternmatcher does."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i == n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch == "[":
            out.append("[^" if pattern.startswith("!", i) else "[")
            if pattern.startswith("!", i):
                i += 1
        elif ch == "]":
            out.append("]")
        elif ch in _REGEX_SPECIALS:
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append("$")
    return "".join(out)


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a `!` pattern: re-includes
    regex: re.Pattern[str]


def compile_patterns(patterns: list[str]) -> list[Pattern]:
    compiled = []
    for p in patterns:
        exclusion = p.startswith("!")
        body = p[1:] if exclusion else p
        if not body:
            raise ValueError("illegal exclusion pattern: \"!\"")
        try:
            regex = re.compile(pattern_regex(body), re.DOTALL)
        except re.error as e:
            raise ValueError(f"invalid .dockerignore pattern {p!r}: {e}") from None
        compiled.append(Pattern(p, exclusion, regex))
    return compiled


class Matcher:
    """Decides whether a context path (relative, `/`-separated) is excluded."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = compile_patterns(patterns)

    @classmethod
    def from_text(cls, text: str) -> Matcher:
        return cls(read_patterns(text))

    def excluded(self, path: str) -> bool:
        path = posixpath.normpath(path)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            match = bool(pattern.regex.match(path))
            if not match and parents:
                match = any(pattern.regex.match("/".join(parents[:i + 1])) for i in range(len(parents)))
            if match:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an excluded directory may still contain re-included paths (so must be walked):
        some `!pattern` matches the directory's path component by component and goes deeper."""
        parts = posixpath.normpath(directory).split("/")
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            components = pattern.text[1:].split("/")
            for i, part in enumerate(parts):
                if i >= len(components):
                    break
                if components[i].startswith("**"):
                    return True
                if not re.match(pattern_regex(components[i]), part):
                    break
            else:
                if len(components) > len(parts):
                    return True
        return False
