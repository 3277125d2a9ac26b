"""docker's json-file format: one JSON object a line, {"log": "text\\n", "stream": "stdout", "time": RFC3339},
with "attrs" (an object) before "time" when log-opt labels, env or tag give some.

The format keeps no partial metadata: a `log` that does not end in a newline is part of a longer line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from cais.engine.logfile import Message, Partial, rfc3339

_NOT_LAST = Partial("", 0, False)
_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                               "\u2029": "\\u2029"})  # Go's encoding/json, for the attributes
_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\udc80-\udcff]')
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def encode(msg: Message) -> bytes:
    """The bytes dockerd writes: compact, the line escaped as docker's jsonlog does it."""
    attrs = ""
    if msg.attrs:
        attrs = ',"attrs":' + json.dumps(dict(msg.attrs), ensure_ascii=False,
                                         separators=(",", ":")).translate(_HTML_ESCAPES)
    return (f'{{"log":{_go_string(msg.text)},"stream":"{msg.stream}"{attrs},"time":"{rfc3339(msg.time_ns, trim=True)}"}}\n'
            ).encode()


def _go_string(data: bytes) -> str:
    """docker's jsonlog string: \\n, \\r, \\" and \\\\ short, other controls and <, >, &, U+2028/9 as
    \\u escapes, each byte of invalid UTF-8 as \\ufffd, the rest as it is."""
    return '"' + _ESCAPE.sub(_escaped, data.decode("utf-8", "surrogateescape")) + '"'


def _escaped(m: re.Match) -> str:
    c = m.group()
    if c in '"\\':
        return "\\" + c
    if c in "\n\r":
        return "\\n" if c == "\n" else "\\r"
    return "\\ufffd" if "\udc80" <= c <= "\udcff" else f"\\u{ord(c):04x}"


def parse_time_ns(text: str) -> int:
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"invalid time {text!r}")
    base = datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def decode(f: BinaryIO, end: int | None = None) -> Iterator[Message]:
    """Entries from f's position on; a line still being written is left for the next call."""
    while end is None or f.tell() < end:
        line = f.readline() if end is None else f.readline(end - f.tell())
        if not line.endswith(b"\n"):
            f.seek(-len(line), os.SEEK_CUR)
            return
        try:
            entry = json.loads(line)
            text = entry["log"].encode()
            when = parse_time_ns(entry["time"])
            attrs = tuple(sorted((str(k), str(v)) for k, v in (entry.get("attrs") or {}).items()))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a damaged line is skipped, as docker's decoder resynchronises
        if text.endswith(b"\n"):
            yield Message(entry.get("stream", "stdout"), when, text[:-1], None, attrs)
        else:
            yield Message(entry.get("stream", "stdout"), when, text, _NOT_LAST, attrs)


def tail_offset(f: BinaryIO, size: int, want: int) -> tuple[int, int]:
    """Where the last `want` whole lines before `size` start, and how many there are."""
    block = 64 * 1024
    pos = size
    found = 0
    end_seen = False  # the newline closing the last whole line
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        chunk = f.read(pos - start)
        i = len(chunk)
        while (i := chunk.rfind(b"\n", 0, i)) >= 0:
            if not end_seen:
                end_seen = True
                continue
            found += 1
            if found == want:
                return start + i + 1, found
        pos = start
    return 0, found + (1 if end_seen else 0)
