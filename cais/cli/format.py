"""Output as docker prints it: aligned tables, `--format json`, and a subset of Go templates.

Templates: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{index .Map "key"}}`,
`{{upper .X}}`, `{{lower .X}}`, `{{println .X}}`; a leading `table` prints a header row.
"""

from __future__ import annotations

import sys

from cais import fastjson
from cais.cli.main import CliError

# re (and the enum it imports: ~10 ms of a start) only once a template is used; the pattern is
# compiled and cached by re then
_ACTION = r"{{-?\s*(.*?)\s*-?}}"


class FormatError(CliError):
    """A template docker would refuse: one line, exit status 1."""


def check(template: str) -> None:
    """Refuse a template that does not parse (before any item is printed, as docker)."""
    import re
    if "{{" in re.sub(_ACTION, "", template):
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


def _eval(expr: str, obj: object) -> str:
    import re
    parts = re.findall(r'"[^"]*"|\S+', expr)
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
    import re
    check(template)
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return re.sub(_ACTION, lambda m: _eval(m.group(1), obj), template)


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
    if fmt == "json":
        for item in items:
            out.write(fastjson.dumps(item, separators=(",", ":")) + "\n")
        return
    if not fmt or fmt == "table":
        out.write(table(rows or [], [h for h, _ in default_columns]))
        return
    check(fmt)
    if fmt.startswith("table"):
        import re
        body = fmt[len("table"):].strip()
        header_template = re.sub(_ACTION, lambda m: _header(m.group(1)), body.replace("\\t", "\t"))
        cells = [render(body, item).split("\t") for item in items]
        out.write(table(cells, header_template.split("\t")))
        return
    for item in items:
        out.write(render(fmt, item) + "\n")


def _header(expr: str) -> str:
    import re
    name = expr.split()[-1].lstrip(".") if expr else ""
    return {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}.get(
        name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper())
