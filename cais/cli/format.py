"""Output as docker prints it: aligned tables, `--format json`, and a subset of Go templates.

Templates: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{index .Map "key"}}`,
`{{upper .X}}`, `{{lower .X}}`, `{{println .X}}`; a leading `table` prints a header row.
"""

from __future__ import annotations

import sys

from cais import fastjson
from cais.cli.main import CliError

TYPE_CHECKING = False  # annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable


class FormatError(CliError):
    """A template docker would refuse: one line, exit status 1."""


def _actions(template: str, action: Callable[[str], str]) -> str:
    """TEMPLATE with each `{{ ACTION }}` replaced by action(ACTION): trim markers (`{{-`, `-}}`) and
    the spaces inside the braces dropped, an action ends at the first `}}` and does not span lines
    (`{{` left as it is then) — what re.sub(r"{{-?\\s*(.*?)\\s*-?}}", …) did, without importing re
    and the enum it needs (~10 ms of every `ps --format` start)."""
    out = []
    done = search = 0
    while (start := template.find("{{", search)) >= 0 and (end := template.find("}}", start + 2)) >= 0:
        inner = template[start + 2:end]
        inner = (inner[1:] if inner.startswith("-") else inner).lstrip()
        inner = (inner[:-1] if inner.endswith("-") else inner).rstrip()
        if "\n" in inner:  # not an action: on from the next character, as a regex search goes
            search = start + 1
            continue
        out += [template[done:start], action(inner)]
        done = search = end + 2
    return "".join(out) + template[done:]


def check(template: str) -> None:
    """Refuse a template that does not parse (before any item is printed, as docker)."""
    if "{{" in _actions(template, lambda _: ""):
        raise FormatError("template parsing error: template: :1: unclosed action")


def _lookup(obj: object, path: str) -> object:
    if path in (".", ""):
        return obj
    value = obj
    for part in path.lstrip(".").split("."):
        if isinstance(value, dict):
            if part not in value:
                raise FormatError(f'template: :1: can\'t evaluate field {part}')
            value = value[part]
        else:
            raise FormatError(f"template: :1: can't evaluate field {part} in type {type(value).__name__}")
    return value


def _text(value: object) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        if isinstance(value, list):
            return "[" + " ".join(_text(v) for v in value) + "]"
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _words(expr: str) -> list[str]:
    """An action's words: "quoted strings" (spaces kept) and runs of non-spaces."""
    words = []
    i = 0
    while i < len(expr):
        if expr[i].isspace():
            i += 1
            continue
        end = expr.find('"', i + 1) + 1 if expr[i] == '"' else 0
        if end <= 0:
            end = i
            while end < len(expr) and not expr[end].isspace():
                end += 1
        words.append(expr[i:end])
        i = end
    return words


def _eval(expr: str, obj: object) -> str:
    parts = _words(expr)
    if not parts:
        return ""
    func, args = parts[0], parts[1:]
    if func.startswith("."):
        return _text(_lookup(obj, func))
    values = [a[1:-1] if a.startswith('"') else _lookup(obj, a) for a in args]
    if func == "json":
        return fastjson.dumps(values[0] if values else obj, separators=(",", ":"))
    if func == "index":
        container, key = values[0], values[1]
        if isinstance(container, dict):
            return _text(container.get(key))
        return _text(container[int(key)])  # type: ignore[index]
    if func == "upper":
        return _text(values[0]).upper()
    if func == "lower":
        return _text(values[0]).lower()
    if func == "println":
        return " ".join(_text(v) for v in values) + "\n"
    if func == "join":
        return str(values[1]).join(_text(v) for v in values[0])  # type: ignore[union-attr]
    raise FormatError(f'template: :1: function "{func}" not defined')


def render(template: str, obj: object) -> str:
    check(template)
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return _actions(template, lambda expr: _eval(expr, obj))


def table(rows: list[list[str]], header: list[str] | None, min_width: int = 10) -> str:
    """Columns as Go's tabwriter lays them out with the docker CLI's settings (minimum width 10 —
    20 for `top` —, padding 3, spaces): a column is as wide as its widest cell plus 3, at least
    the minimum; the last cell of a line is not a column and is written as it is."""
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    widths = [min_width] * max(len(r) for r in all_rows)
    for r in all_rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + 3)
    lines = ["".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])) + (r[-1] if r else "") for r in all_rows]
    return "\n".join(lines) + "\n"


def output(items: list[dict], fmt: str | None, default_columns: list[tuple[str, str]],
           rows: list[list[str]] | None = None) -> None:
    """Print `items` with docker's --format semantics; `rows` are the default table's cells."""
    out = sys.stdout
    if fmt == "json":  # the docker CLI marshals each line from a Go map: keys sorted
        for item in items:
            out.write(fastjson.dumps(item, separators=(",", ":"), sort_keys=True) + "\n")
        return
    if not fmt or fmt == "table":
        out.write(table(rows or [], [h for h, _ in default_columns]))
        return
    check(fmt)
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip()
        header_template = _actions(body.replace("\\t", "\t"), _header)
        cells = [render(body, item).split("\t") for item in items]
        out.write(table(cells, header_template.split("\t")))
        return
    for item in items:
        out.write(render(fmt, item) + "\n")


def _header(expr: str) -> str:
    name = expr.split()[-1].lstrip(".") if expr else ""
    words = "".join(f" {c}" if i and "A" <= c <= "Z" and "a" <= name[i - 1] <= "z" else c for i, c in enumerate(name))
    return {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}.get(name, words.upper())
