"""Docker's variable substitution and word splitting for Dockerfile arguments.

A port of the lexer docker's builder uses (buildkit `frontend/dockerfile/shell`): quotes,
the escape token (`\\` or a backtick after `# escape=`), `$VAR`, `${VAR}`, `${VAR:-x}`,
`${VAR-x}`, `${VAR:+x}`, `${VAR+x}`, `${VAR:?x}`, `${VAR#x}`, `${VAR%x}`, `${VAR/x/y}`.
It is applied only to the instructions docker expands (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR, ARG, ONBUILD's target): RUN, CMD and ENTRYPOINT in shell
form are left to the shell in the container.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

_SPECIAL_PARAMS = set("@*#?-$!0")


class ShellSyntaxError(ValueError):
    """A malformed substitution or an unterminated quote."""


class _Words:
    """Accumulates words the way buildkit does: quoted text never splits, expanded text does."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class Lexer:
    """`process_word` expands one word (whitespace kept); `process_words` also splits into words.

    `raw_quotes`/`raw_escapes` keep quotes and escape tokens in the output (the parser uses
    that to find here-document markers); `skip_unset` leaves references to unset variables as
    written.
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, text: str, env: Mapping[str, str]) -> str:
        return _Scan(self, text, env).process_stop_on(None)[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        return _Scan(self, text, env).process_stop_on(None)[1]


class _Scan:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process_stop_on(self, stop: str | None, raw_escapes: bool = False) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        raw_escapes = raw_escapes or self.lx.raw_escapes
        while self.peek():
            ch = self.peek()
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "'":
                part = self.single_quote()
                words.add_raw(part)
                result.append(part)
            elif ch == '"':
                part = self.double_quote()
                words.add_raw(part)
                result.append(part)
            elif ch == "$":
                part = self.dollar()
                words.add_string(part)
                result.append(part)
            else:
                ch = self.next()
                if ch == self.lx.escape:
                    if raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise ShellSyntaxError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise ShellSyntaxError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.peek()
            if not ch:
                raise ShellSyntaxError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lx.escape:
                if self.lx.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.lx.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        ch = self.peek()
        if ch.isdigit():
            start = self.pos
            while self.peek().isdigit():
                self.next()
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        start = self.pos
        while (c := self.peek()) and (c.isalnum() or c == "_"):
            self.next()
        return self.text[start:self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.next()  # the {
        if not self.peek():
            raise ShellSyntaxError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellSyntaxError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if not ch:
            raise ShellSyntaxError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch in ("+", "-", "?", "#", "%"):
            word = self.process_stop_on("}", raw_escapes=ch in "#%")[0]
            value, found = self.lookup(name)
            if self.lx.skip_unset and not found:
                return "${" + name + modifier + word + "}"
            unset = not found or (null_is_unset and value == "")
            if ch == "-":
                return word if unset else value
            if ch == "+":
                return "" if unset else word
            if ch == "?":
                if not found:
                    raise ShellSyntaxError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ShellSyntaxError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if null_is_unset:
                raise ShellSyntaxError(f"unsupported modifier ({modifier}) in substitution")
            return _trim(value, word, prefix=ch == "#")
        if ch == "/" and not null_is_unset:
            return self.replace(name)
        raise ShellSyntaxError(f"unsupported modifier ({modifier}) in substitution")

    def replace(self, name: str) -> str:
        greedy = self.peek() == "/"
        if greedy:
            self.next()
        pattern, stop = self._until("/}")
        replacement = self._until("}")[0] if stop == "/" else ""
        value, found = self.lookup(name)
        if self.lx.skip_unset and not found:
            return "${" + name + "/" + ("/" if greedy else "") + pattern + "/" + replacement + "}"
        regex = re.compile(_glob_regex(pattern))
        return regex.sub(lambda _m: replacement, value, count=0 if greedy else 1)

    def _until(self, stops: str) -> tuple[str, str]:
        """Text up to one of `stops` (variables expanded, escapes kept); returns it and the stop."""
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ShellSyntaxError("syntax error: missing '}'")
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch in stops:
                return "".join(out), ch
            if ch == self.lx.escape and self.peek():
                ch = self.next()
            out.append(ch)


def _glob_regex(pattern: str) -> str:
    """A shell pattern (`*`, `?`, `[...]`, escapes) as a regex; `*` may match `/` as in the shell."""
    return fnmatch.translate(pattern)[4:-3]  # strip fnmatch's (?s:...)\Z wrapper


def _trim(value: str, pattern: str, *, prefix: bool) -> str:
    """${VAR#p} / ${VAR##p} (prefix) and ${VAR%p} / ${VAR%%p} (suffix) removal."""
    greedy = pattern[:1] == ("#" if prefix else "%")
    if greedy:
        pattern = pattern[1:]
    regex = re.compile(r"(?s:" + _glob_regex(pattern) + r")\Z")
    lengths = range(len(value), -1, -1) if greedy else range(len(value) + 1)
    for n in lengths:
        part = value[:n] if prefix else value[len(value) - n:]
        if regex.match(part):
            return value[n:] if prefix else value[:len(value) - n]
    return value
