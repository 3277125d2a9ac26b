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

from cais.engine.logfile import Message, Partial, rfc3339, utc_seconds

_NOT_LAST = Partial("", 0, False)
# the common line, read without a JSON decoder: a log with nothing escaped but its final newline
_PLAIN = re.compile(rb'\{"log":"([^"\\\x00-\x1f]*)(\\n)?","stream":"(stdout|stderr)","time":"([^"]{20,35})"\}\n')
_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                               "\u2029": "\\u2029"})  # Go's encoding/json, for the attributes
_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\udc80-\udcff]')
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


_SAFE = re.compile(rb'[^\x00-\x1f"\\<>&\x80-\xff]*')  # bytes that stand for themselves in docker's JSON


def encode(msg: Message) -> bytes:
    """The bytes dockerd writes: compact, the line escaped as docker's jsonlog does it."""
    if not msg.attrs and _SAFE.fullmatch(msg.line):  # the common line: nothing to escape, no decoding
        end = b'\\n","stream":"' if msg.partial is None or msg.partial.last else b'","stream":"'
        return b'{"log":"%s%s%s","time":"%s"}\n' % (msg.line, end, msg.stream.encode(),
                                                     rfc3339(msg.time_ns, trim=True).encode())
    attrs = ""
    if msg.attrs:
        attrs = ',"attrs":' + json.dumps(dict(msg.attrs), ensure_ascii=False,
                                         separators=(",", ":")).translate(_HTML_ESCAPES)
    return (f'{{"log":{_go_string(msg.text)},"stream":"{msg.stream}"{attrs},"time":"{rfc3339(msg.time_ns, trim=True)}"}}\n'
            ).encode()


_UNSAFE = re.compile(rb'[\x00-\x09\x0b-\x1f"\\<>&\x80-\xff]')  # _SAFE's complement, newline aside


def encode_lines(stream: str, lines: list[bytes], times: list[int]) -> list[bytes]:
    """encode() of whole lines of one stream, each with its time: the common case of a write,
    checked for what needs escaping once for them all and formatted without a Message a line."""
    if _UNSAFE.search(b"\n".join(lines)):
        return [encode(Message(stream, t, line)) for line, t in zip(lines, times, strict=True)]
    head, middle = b'{"log":"', b'\\n","stream":"%s","time":"' % stream.encode()
    out = []
    second, date = -1, b""
    for line, t in zip(lines, times, strict=True):
        sec, frac = divmod(t, 1_000_000_000)
        if sec != second:
            second, date = sec, utc_seconds(sec).encode()
        out.append(b'%s%s%s%s%sZ"}\n' % (head, line, middle, date, (b".%09d" % frac).rstrip(b"0").rstrip(b".")))
    return out


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


_base_cache: tuple[str, int] = ("", 0)  # the last "YYYY-MM-DDTHH:MM:SS" of a UTC time parsed, in unix ns


def parse_time_ns(text: str) -> int:
    """RFC 3339 → unix ns. docker's own times (UTC, "…Z") are parsed once a second, the fraction
    each time: the common case of `logs` reading a big file."""
    global _base_cache
    if len(text) > 20 and text[19] == "." and text[-1] == "Z" and text[20:-1].isdigit() and len(text) <= 30:
        base, ns = _base_cache
        if text[:19] != base:
            base, ns = text[:19], _parse_time_ns(text[:19] + "Z")
            _base_cache = (base, ns)
        return ns + int(text[20:-1].ljust(9, "0"))
    return _parse_time_ns(text)


def _parse_time_ns(text: str) -> int:
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"invalid time {text!r}")
    base = datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def decode(f: BinaryIO, end: int | None = None, since: int | None = None) -> Iterator[Message]:
    """Entries from f's position on; a line still being written is left for the next call.
    Entries older than `since` may be left out unread (their time is the line's last field)."""
    loads = json.JSONDecoder().decode  # on str: json.loads would sniff each line's encoding
    while end is None or f.tell() < end:
        line = f.readline() if end is None else f.readline(end - f.tell())
        if not line.endswith(b"\n"):
            f.seek(-len(line), os.SEEK_CUR)
            return
        if since is not None and line.endswith(b'"}\n') and (at := line.rfind(b',"time":"')) > 0:
            try:  # a string's own quotes are escaped: the last `,"time":"` is the field
                if parse_time_ns(line[at + 9:-3].decode()) < since:
                    continue
            except ValueError:
                pass  # the full decoding below says what is wrong
        plain = _PLAIN.fullmatch(line)
        if plain is not None:
            text, newline, stream, when_text = plain.groups()
            try:
                when = parse_time_ns(when_text.decode())
                text.decode()  # what the JSON decoder would refuse, it refuses too
            except ValueError:
                continue
            yield Message(stream.decode(), when, text, None if newline else _NOT_LAST)
            continue
        try:
            entry = loads(line.decode("utf-8", "surrogatepass"))
            text = entry["log"].encode()
            when = parse_time_ns(entry["time"])
            attrs = tuple(sorted((str(k), str(v)) for k, v in entry["attrs"].items())) if entry.get("attrs") else ()
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a damaged line is skipped, as docker's decoder resynchronises
        if text[-1:] == b"\n":
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



_BISECT_STOP = 64 * 1024  # a window this small is read line by line


def since_offset(f: BinaryIO, size: int, since: int) -> int:
    """Where to start reading for the lines at or after `since`: a line start at or before the
    first of them (`size` if every line is older), found by bisecting the bytes before `size`.
    Any byte after a newline starts a line (a JSON string holds no raw newline), and lines are in
    time order — but for a long line's later parts, which carry its first part's time, so a probe
    judges by the first whole line it finds, and a window holding none is left alone."""
    lo, hi = 0, size  # the lines before lo are older than `since`; the answer is at most hi
    while hi - lo > _BISECT_STOP:
        mid = (lo + hi) // 2
        f.seek(mid - 1)
        f.readline(hi - mid + 1)  # to the end of the line holding byte mid - 1
        first = f.tell()
        when = None
        while when is None and (pos := f.tell()) < hi:
            line = f.readline(hi - pos)
            at = line.rfind(b',"time":"')
            if not line.endswith(b'"}\n') or at < 0:
                return lo  # damaged, or not written yet: reading from lo sorts it out
            try:
                stamp = parse_time_ns(line[at + 9:-3].decode())
            except ValueError:
                return lo
            if _whole(line):
                when = stamp
        if when is None:
            hi = mid  # no line starts in [mid, hi), or only a long line's parts: look before
        elif when < since:
            lo = f.tell()  # this line and every one before it are older
        else:
            hi = first
    f.seek(lo)  # the window, line by line: past the last whole line older than `since`
    while (pos := f.tell()) < hi:
        line = f.readline(hi - pos)
        at = line.rfind(b',"time":"')
        if not line.endswith(b'"}\n') or at < 0:
            break
        try:
            when = parse_time_ns(line[at + 9:-3].decode())
        except ValueError:
            break
        if _whole(line):
            if when >= since:
                break
            lo = f.tell()
    return lo


def _whole(line: bytes) -> bool:
    """Whether a line's "log" ends a line (in an escaped newline), rather than being a part of one."""
    end = line.find(b'","stream":"')  # the log string's closing quote: its own quotes are escaped
    text = line[:end - 1]  # before the final "n"
    return end > 0 and line[end - 1:end] == b"n" and (len(text) - len(text.rstrip(b"\\"))) % 2 == 1
