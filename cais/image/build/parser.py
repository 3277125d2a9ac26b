"""The Dockerfile grammar, as docker's reference documents it (and buildkit implements it).

`parse(text, filename)` turns a Dockerfile into a list of `Node`s: one per instruction, with
its flags, its arguments (raw: variables are expanded later, at build time, where docker does
it), its here-documents and its line range. It handles parser directives (`# syntax`,
`# escape`, `# check`), comments, line continuations with the escape token, empty
continuation lines, shell and JSON (exec) forms and here-documents (`<<EOF`, `<<-EOF`, quoted
delimiters, several per instruction). Errors are `DockerfileError`s naming file and line.

Hand-written rather than `dockerfile-parse`: that library has no here-documents, no error
positions and does not parse flags or the escape directive the way docker does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cais.image.build.shell_words import Lexer, ShellSyntaxError

KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_HEREDOC_INSTRUCTIONS = ("ADD", "COPY", "RUN")


class DockerfileError(Exception):
    """A Dockerfile that cannot be parsed or built; `str()` is `FILE:LINE: problem`."""

    def __init__(self, message: str, filename: str = "Dockerfile", line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line else self.filename
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool  # the delimiter was not quoted: variables in the content are expanded
    chomp: bool  # <<-: leading tabs are stripped from each line
    fd: int | None = None  # `3<<EOF` on RUN

    @property
    def text(self) -> str:
        return chomp_tabs(self.content) if self.chomp else self.content


@dataclass
class Node:
    """One instruction as written. `args` depends on the instruction (see `parse`)."""

    keyword: str  # upper case: RUN, COPY...
    args: list[str]
    flags: list[str] = field(default_factory=list)
    json: bool = False  # exec form
    heredocs: list[Heredoc] = field(default_factory=list)
    original: str = ""  # the instruction on one line, continuations joined
    line: int = 0
    end_line: int = 0
    trigger: Node | None = None  # ONBUILD's instruction


@dataclass
class Directives:
    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None


@dataclass
class ParsedDockerfile:
    nodes: list[Node]
    directives: Directives
    filename: str = "Dockerfile"
    warnings: list[str] = field(default_factory=list)


def chomp_tabs(text: str) -> str:
    return "".join(line.lstrip("\t") for line in text.splitlines(keepends=True))


def parse(text: str | bytes, filename: str = "Dockerfile") -> ParsedDockerfile:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerfileError(f"not valid UTF-8 ({e.reason} at byte {e.start})", filename) from None
    return _Parser(text.removeprefix("\ufeff"), filename).run()


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.lines = text.splitlines()
        self.filename = filename
        self.directives = Directives()
        self.seen_directives: set[str] = set()
        self.directives_done = False
        self.warnings: list[str] = []
        self.pos = 0  # index of the next line to read

    def error(self, message: str, line: int) -> DockerfileError:
        return DockerfileError(message, self.filename, line)

    def run(self) -> ParsedDockerfile:
        nodes: list[Node] = []
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            self.pos += 1
            start = self.pos
            stripped = raw.lstrip(" \t")
            self.directive(stripped, start)
            if stripped.startswith("#") or not stripped:
                continue
            line, done = self.trim_continuation(stripped)
            empty_continuation = False
            while not done and self.pos < len(self.lines):
                cont = self.lines[self.pos]
                self.pos += 1
                if cont.lstrip(" \t").startswith("#"):
                    continue
                if not cont.strip():
                    empty_continuation = True
                    continue
                part, done = self.trim_continuation(cont)
                line += part
            if empty_continuation:
                self.warnings.append(f"{self.filename}:{start}: empty continuation line")
            if not line.strip():
                continue
            nodes.append(self.node(line, start))
        return ParsedDockerfile(nodes, self.directives, self.filename, self.warnings)

    def directive(self, line: str, lineno: int) -> None:
        if self.directives_done:
            return
        m = _DIRECTIVE.match(line)
        if not m or m.group(1).lower() not in KNOWN_DIRECTIVES:
            self.directives_done = True
            return
        name, value = m.group(1).lower(), m.group(2)
        if name in self.seen_directives:
            raise self.error(f"only one {name} parser directive can be used", lineno)
        self.seen_directives.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise self.error(f"invalid escape token {value!r} does not match ` or \\", lineno)
            self.directives.escape = value
        else:
            setattr(self.directives, name, value)

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing escape token (plus blanks); say whether the instruction ends here."""
        stripped = line.rstrip(" \t")
        if stripped.endswith(self.directives.escape):
            return stripped[:-1], False
        return line, True

    def node(self, line: str, start: int) -> Node:
        keyword, flags, rest = split_command(line)
        keyword = keyword.upper()
        node = Node(keyword, [], flags, original=line.strip(), line=start)
        if keyword in _HEREDOC_INSTRUCTIONS and "<<" in line:
            node.heredocs = self.read_heredocs(line, start)
        node.end_line = self.pos
        try:
            _ARGUMENTS.get(keyword, _unknown)(node, rest, self.directives.escape)
        except (DockerfileError, ShellSyntaxError) as e:
            raise self.error(getattr(e, "message", str(e)), start) from None
        if node.trigger is not None:
            node.trigger.line = node.trigger.end_line = start
        return node

    def read_heredocs(self, line: str, start: int) -> list[Heredoc]:
        docs = []
        for marker in heredoc_markers(line, self.directives.escape):
            content: list[str] = []
            while True:
                if self.pos >= len(self.lines):
                    raise self.error(f"unterminated heredoc {marker.name!r}", start)
                text = self.lines[self.pos]
                self.pos += 1
                candidate = text.lstrip("\t") if marker.chomp else text
                if candidate == marker.name:
                    break
                content.append(text + "\n")
            docs.append(Heredoc(marker.name, "".join(content), marker.expand, marker.chomp, marker.fd))
        return docs


def split_command(line: str) -> tuple[str, list[str], str]:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    if len(parts) == 1:
        return parts[0], [], ""
    rest, flags = extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading `--name[=value]` words (quotes and backslashes honoured), and the rest of the line."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word: list[str] = []
        blank_ok = False
        quote = ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != "\\":
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], words
        if blank_ok or text:
            words.append(text)


def heredoc_markers(line: str, escape: str = "\\") -> list[Heredoc]:
    """The `<<NAME` / `<<-NAME` / `<<"NAME"` words of an instruction line (content still empty)."""
    try:
        words = Lexer(escape, raw_quotes=True, raw_escapes=True, skip_unset=True).process_words(line, {})
    except ShellSyntaxError:
        return []
    docs = []
    for word in words:
        doc = parse_heredoc_marker(word, escape)
        if doc is not None:
            docs.append(doc)
    return docs


def parse_heredoc_marker(word: str, escape: str = "\\") -> Heredoc | None:
    m = _HEREDOC.match(word)
    if not m or not m.group(3).strip():
        return None
    rest = m.group(3).strip()
    try:
        cooked = Lexer(escape, skip_unset=True).process_words(rest, {})
        raw = Lexer(escape, raw_quotes=True, skip_unset=True).process_words(rest, {})
    except ShellSyntaxError:
        return None
    if len(cooked) != 1 or len(raw) != 1:
        return None
    quotes = sum(raw[0].count(q) for q in "'\"") - sum(cooked[0].count(q) for q in "'\"")
    return Heredoc(cooked[0], "", expand=quotes == 0, chomp=m.group(2) == "-",
                   fd=int(m.group(1)) if m.group(1) else None)


# --- argument forms, one per instruction (buildkit's dispatch table) ---

def parse_json_array(rest: str) -> list[str] | None:
    """The JSON (exec) form, or None when `rest` is not a JSON array (then it is shell form)."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _maybe_json(node: Node, rest: str, escape: str) -> None:
    value = parse_json_array(rest)
    if value is not None:
        node.args, node.json = value, True
    elif rest:
        node.args = [rest]


def _maybe_json_list(node: Node, rest: str, escape: str) -> None:
    value = parse_json_array(rest)
    if value is not None:
        node.args, node.json = value, True
    else:
        node.args = _whitespace_words(rest)


def _whitespace_words(rest: str) -> list[str]:
    rest = rest.strip()
    return _WHITESPACE.split(rest) if rest else []


def _strings(node: Node, rest: str, escape: str) -> None:
    node.args = _whitespace_words(rest)


def _string(node: Node, rest: str, escape: str) -> None:
    node.args = [rest] if rest else []


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words (expanded later)."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_word = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            i += 1
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape:
            if i + 1 == n:
                break
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _name_values(node: Node, rest: str, escape: str) -> None:
    """ENV and LABEL: `KEY value` (old form) or `KEY=value ...`; args are flattened pairs."""
    words = parse_words(rest, escape)
    if not words:
        raise DockerfileError(f"{node.keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{node.keyword} must have two arguments")
        node.args = [parts[0], parts[1]]
        return
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        key, value = word.split("=", 1)
        node.args += [key, value]


def _arg(node: Node, rest: str, escape: str) -> None:
    node.args = parse_words(rest, escape)


def _healthcheck(node: Node, rest: str, escape: str) -> None:
    parts = rest.split(None, 1)
    if not parts:
        return
    kind = parts[0]
    inner = Node(node.keyword, [])
    _maybe_json(inner, parts[1] if len(parts) > 1 else "", escape)
    node.args, node.json = [kind, *inner.args], inner.json


def _onbuild(node: Node, rest: str, escape: str) -> None:
    if not rest:
        raise DockerfileError("ONBUILD requires at least one argument")
    keyword, flags, inner_rest = split_command(rest)
    keyword = keyword.upper()
    if keyword == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{keyword} isn't allowed as an ONBUILD trigger")
    trigger = Node(keyword, [], flags, original=rest.strip())
    _ARGUMENTS.get(keyword, _unknown)(trigger, inner_rest, escape)
    node.trigger = trigger
    node.args = [rest.strip()]


def _unknown(node: Node, rest: str, escape: str) -> None:
    raise DockerfileError(f"unknown instruction: {node.keyword}")


_ARGUMENTS = {
    "ADD": _maybe_json_list,
    "ARG": _arg,
    "CMD": _maybe_json,
    "COPY": _maybe_json_list,
    "ENTRYPOINT": _maybe_json,
    "ENV": _name_values,
    "EXPOSE": _strings,
    "FROM": _strings,
    "HEALTHCHECK": _healthcheck,
    "LABEL": _name_values,
    "MAINTAINER": _string,
    "ONBUILD": _onbuild,
    "RUN": _maybe_json,
    "SHELL": _maybe_json,
    "STOPSIGNAL": _string,
    "USER": _string,
    "VOLUME": _maybe_json_list,
    "WORKDIR": _string,
}
