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


class NoField(FormatError):
    """A field the value does not have: where (NODE, as written) and why, for render's message."""

    def __init__(self, node: str, offset: int, reason: str) -> None:
        super().__init__(f"template: :1: {reason}")
        self.node, self.offset, self.reason = node, offset, reason


class Context(dict):
    """A docker CLI formatter context (see contexts.py): its fields, what `{{json .}}` prints, and
    the labels `{{.Label "key"}}` reads; GO_TYPE names it in errors (`*formatter.ContainerContext`)."""

    def __init__(self, fields: dict, labels: dict | None = None, go_type: str = "") -> None:
        super().__init__(fields)
        self.labels = labels or {}
        self.go_type = go_type


def go_json(value: object) -> str:
    """`{{json VALUE}}` as the docker CLI prints it: a context through json.Marshal (keys sorted,
    `<>&` escaped), anything else through an Encoder without HTML escaping."""
    if isinstance(value, Context):
        return fastjson.dumps(value, separators=(",", ":"), sort_keys=True, go=True, escape_html=True)
    if isinstance(value, list) and any(isinstance(v, Context) for v in value):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict) and any(isinstance(v, (Context, list)) for v in value.values()):  # a struct of them
        return "{" + ",".join(f"{go_json(k)}:{go_json(v)}" for k, v in value.items()) + "}"
    return fastjson.dumps(value, separators=(",", ":"), go=True)


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


# the API objects' fields that are Go maps (the others are structs)
_GO_MAPS = frozenset(("Labels", "Attributes", "Options", "DriverOpts", "Networks", "Ports", "ExposedPorts", "Volumes",
                      "Data", "Containers", "Status", "Sysctls", "StorageOpt", "Tmpfs", "Annotations", "Plugins"))


def _lookup(obj: object, path: str) -> object:
    if path in (".", ""):
        return obj
    value, field, offset = obj, "", 0
    for part in path.lstrip(".").split("."):
        if isinstance(value, dict):
            if part not in value:
                if field in _GO_MAPS:  # a Go map: a missing key is no value; a struct has no such field
                    return None
                if isinstance(value, Context):
                    raise NoField(path, offset, f"can't evaluate field {part} in type {value.go_type or 'struct'}")
                raise NoField(path, offset, f'map has no entry for key "{part}"')  # inspect's fallback to a map
            value, field, offset = value[part], part, offset + len(part) + 1
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
    if func == ".Label" and isinstance(obj, Context) and args:
        return _text(obj.labels.get(args[0].strip('"'), ""))
    if func.startswith("."):
        value = _lookup(obj, func)
        return "<nil>" if value is None and isinstance(obj, Context) else _text(value)  # ps' nil *Platform
    values = [a[1:-1] if a.startswith('"') else _lookup(obj, a) for a in args]
    if func == "json":
        return go_json(values[0] if values else obj)
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


def render(template: str, obj: object, prefix: str = "", escapes: bool = True, go_type: str = "") -> str:
    """TEMPLATE executed on OBJ (`\\t`, `\\n` read as tab and newline with ESCAPES); an error as
    Go's `template: :LINE:COL: executing "" at <.X>: …`, after PREFIX (the docker CLI's words vary
    by command); GO_TYPE: the struct OBJ stands for, in the error for a field it lacks."""
    check(template)
    if escapes:
        template = template.replace("\\t", "\t").replace("\\n", "\n")
    try:
        return _actions(template, lambda expr: _eval(expr, obj))
    except NoField as e:
        at = max(template.find(e.node), 0) + e.offset
        line, col = template.count("\n", 0, at) + 1, at - template.rfind("\n", 0, at) - 1
        reason = e.reason
        if go_type and not e.offset:
            reason = f"can't evaluate field {e.node.lstrip('.').split('.')[0]} in type {go_type}"
        raise FormatError(f'{prefix}template: :{line}:{col}: executing "" at <{e.node}>: {reason}') from None


def inspect_lines(items: list, template: str, go_type: str = "") -> list[str]:
    """`inspect -f`: each item's line printed (a newline if none renders), the errors returned."""
    errors, printed = [], False
    for item in items:
        try:
            line = render(template, item, "template parsing error: ", go_type=go_type)
        except FormatError as e:
            errors.append(str(e))
            continue
        sys.stdout.write(line + "\n")
        printed = True
    if items and not printed:
        sys.stdout.write("\n")
    return errors


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
           rows: list[list[str]] | None = None, raw: list[tuple[str, str, bool]] | None = None,
           error_prefix: str = "template parsing error: ") -> None:
    """Print `items` with docker's --format semantics; `rows` are the default table's cells, `raw`
    the `--format raw` lines: (label, field, padded: no space after the colon when empty)."""
    out = sys.stdout
    if fmt == "raw" and raw:  # one `label: value` line per field, a blank line after each item
        for item in items:
            out.write("".join(f"{label}:{' ' if item[k] or not padded else ''}{item[k]}\n"
                              for label, k, padded in raw) + "\n")
        return
    if fmt == "json":  # {{json .}}: the docker CLI marshals each context as a Go map, keys sorted
        for item in items:
            out.write(go_json(Context(item) if type(item) is dict else item) + "\n")
        return
    if not fmt or fmt == "table":
        out.write(table(rows or [], [h for h, _ in default_columns]))
        return
    check(fmt)
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip()
        known = {field: header for header, field in default_columns}  # the context's headers
        header_template = _actions(body.replace("\\t", "\t"), lambda expr: _header(expr, known))
        cells = [render(body, item, error_prefix).split("\t") for item in items]
        out.write(table(cells, header_template.split("\t")))
        return
    for item in items:
        out.write(render(fmt, item, error_prefix) + "\n")


def _header(expr: str, known: dict[str, str] | None = None) -> str:
    parts = _words(expr)
    if len(parts) > 1 and parts[0] == ".Label":  # HeaderContext.Label: the key's last dotted part
        return parts[1].strip('"').rsplit(".", 1)[-1]
    name = expr.split()[-1].lstrip(".") if expr else ""
    if known and name in known:
        return known[name]
    words = "".join(f" {c}" if i and "A" <= c <= "Z" and "a" <= name[i - 1] <= "z" else c for i, c in enumerate(name))
    return {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "CreatedSince": "CREATED",
            "VirtualSize": "SIZE"}.get(name, words.upper())
