"""Output as docker prints it: aligned tables, `--format json`, and Go templates (gotemplate.py)
on the docker CLI's contexts and API objects; a leading `table` prints a header row."""

from __future__ import annotations

import sys

from cais import fastjson
from cais.cli.main import CliError


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


_PARSED: dict[str, list] = {}


def _parse(template: str) -> list:
    """TEMPLATE's nodes (cached: a list renders one template per item); a parse error as docker."""
    key = template
    if key not in _PARSED:
        from cais.cli import gotemplate
        try:
            _PARSED[key] = gotemplate.parse(template, gotemplate.NAMES)
        except gotemplate.ParseError as e:
            raise FormatError(f"template parsing error: {e}") from None
        except RecursionError:  # Go's parser stops at a depth too
            raise FormatError("template parsing error: template: :1: max expression depth exceeded") from None
    return _PARSED[key]


def check(template: str) -> None:
    """Refuse a template that does not parse (before any item is printed, as docker)."""
    _parse(template)


# the API objects' fields that are Go maps (the others are structs)
_GO_MAPS = frozenset(("Labels", "Attributes", "Options", "DriverOpts", "Networks", "Ports", "ExposedPorts", "Volumes",
                      "Data", "Containers", "Status", "Sysctls", "StorageOpt", "Tmpfs", "Annotations", "Plugins",
                      "PortBindings"))
# the API objects' fields that are Go slices: null is a nil slice
_GO_SLICES = frozenset(("Env", "Cmd", "Entrypoint", "Args", "Mounts", "Binds", "Dns", "DnsOptions", "DnsSearch",
                        "ExtraHosts", "CapAdd", "CapDrop", "SecurityOpt", "Links", "RepoTags", "RepoDigests",
                        "Layers", "OnBuild", "Shell", "Aliases", "DNSNames", "Devices", "GroupAdd", "VolumesFrom"))


def _lookup(receiver: object, name: str, node: object, root: object, go_type: str, k: int = 0) -> object:
    """Field NAME of RECEIVER as text/template reads it: a context is a struct (a missing field is
    an error, a nil field `<nil>`), a map field a Go map (a missing key: no value), another dict the
    map inspect falls back to (a missing key is an error: missingkey=error)."""
    from cais.cli import gotemplate as gt
    if isinstance(receiver, dict):
        if name in receiver:
            value = receiver[name]
            if value is None and isinstance(receiver, Context):
                return gt.NIL  # ps' nil *Platform
            if name in _GO_MAPS and (type(value) is dict or value is None and type(receiver) is not gt.GoMap):
                return gt.GoMap(value) if value is not None else gt.NilMap()  # nil: `map[]`, json null
            if value is None and name in _GO_SLICES:
                return gt.NilList()  # a nil slice: `[]`, json null
            return value
        if isinstance(receiver, gt.GoMap):
            return gt.MISSING
        if isinstance(receiver, Context) or (go_type and receiver is root):
            struct = (receiver is root and go_type) or getattr(receiver, "go_type", "") or "struct"
            message = f"can't evaluate field {name} in type {struct}"
        else:
            message = f'map has no entry for key "{name}"'
        raise gt.ExecError(node.pos, node.text, message)  # type: ignore[attr-defined]
    if receiver is None or receiver is gt.MISSING or receiver is gt.NIL or type(receiver) is gt.NilList:
        raise gt.ExecError(node.pos, node.text, f"nil pointer evaluating interface {{}}.{name}")  # type: ignore[attr-defined]
    kind = "interface {}" if type(root) is dict and k >= 0 else gt.go_type(receiver)  # inspect's fallback map
    raise gt.ExecError(node.pos, node.text, f"can't evaluate field {name} in type {kind}")  # type: ignore[attr-defined]


def _method(receiver: object, name: str, args: list, node: object) -> object:
    """`.Label "key"`, the one method of the contexts; a field given arguments is an error."""
    from cais.cli import gotemplate as gt
    if name == "Label" and isinstance(receiver, Context):
        if len(args) != 1:
            raise gt.ExecError(node.pos, node.text, f"wrong number of args for Label: want 1 got {len(args)}")  # type: ignore[attr-defined]
        if not isinstance(args[0], str):
            raise gt.ExecError(node.pos, node.text,  # type: ignore[attr-defined]
                               f"wrong type for value; expected string; got {gt.go_type(args[0])}")
        return receiver.labels.get(args[0], "")
    if isinstance(receiver, dict) and name in receiver:
        raise gt.ExecError(node.pos, node.text, f"{name} is not a method but has arguments")  # type: ignore[attr-defined]
    _lookup(receiver, name, node, None, "")
    raise gt.ExecError(node.pos, node.text, f"{name} is not a method")  # type: ignore[attr-defined]


def _location(template: str, pos: int) -> str:
    line_start = template.rfind("\n", 0, pos) + 1
    return f"{template.count(chr(10), 0, pos) + 1}:{len(template[line_start:pos].encode())}"


def render(template: str, obj: object, prefix: str = "", escapes: bool = True, go_type: str = "") -> str:
    """TEMPLATE executed on OBJ (`\\t`, `\\n` read as tab and newline with ESCAPES); an error as
    Go's `template: :LINE:COL: executing "" at <.X>: …`, after PREFIX (the docker CLI's words vary
    by command); GO_TYPE: the struct OBJ stands for, in the error for a field it lacks."""
    from cais.cli import gotemplate as gt
    if escapes:
        template = template.replace("\\t", "\t").replace("\\n", "\n")
    nodes = _parse(template)
    out: list[str] = []
    runner = gt.Executor(lambda r, name, node, k: _lookup(r, name, node, obj, go_type, k), _method)
    if type(obj) is dict:
        runner.number_type = "json.Number"
    try:
        runner.run(nodes, obj, out)
    except RecursionError:
        raise FormatError(f"{prefix}template: :1: max expression depth exceeded") from None
    except gt.ExecError as e:
        raise FormatError(f'{prefix}template: :{_location(template, e.pos)}: executing "" at <{e.node}>: '
                          f"{e.message}") from None
    return "".join(out)


def header(template: str, known: dict[str, str] | None = None) -> str:
    """A table's header: TEMPLATE executed on the header context (each field's column title) with
    docker's HeaderFunctions; what renders before an error is kept, as docker ignores the error."""
    from cais.cli import gotemplate as gt

    def lookup(receiver: object, name: str, node: object, k: int) -> object:
        if k or receiver is not known_dot:
            raise gt.ExecError(node.pos, node.text, "no header")  # type: ignore[attr-defined]
        return _header_name(name, known)

    def method(receiver: object, name: str, args: list, node: object) -> object:
        if name == "Label" and args and isinstance(args[0], str):  # HeaderContext.Label: the key's last dotted part
            return args[0].rsplit(".", 1)[-1]
        raise gt.ExecError(node.pos, node.text, "no header")  # type: ignore[attr-defined]

    known_dot = Context({})
    out: list[str] = []
    try:
        gt.Executor(lookup, method, gt.HEADER_FUNCS).run(_parse(template), known_dot, out)
    except gt.ExecError:
        return "".join(out)
    return "".join(out)


def inspect_lines(items: list, template: str, go_type: str = "") -> list[str]:
    """`inspect -f`: each item's line printed (a newline if none renders), the errors returned."""
    try:
        check(template)
    except FormatError as e:
        raise FormatError(str(e), 64) from None  # docker's StatusError for a template it cannot parse
    errors, printed = [], False
    for item in items:
        try:
            line = render(template, item, "template parsing error: ", escapes=False, go_type=go_type)
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
        header_template = header(body.replace("\\t", "\t").replace("\\n", "\n"), known)
        cells = [render(body, item, error_prefix).split("\t") for item in items]
        out.write(table(cells, header_template.split("\t")))
        return
    for item in items:
        out.write(render(fmt, item, error_prefix) + "\n")


def _header_name(name: str, known: dict[str, str] | None = None) -> str:
    """A field's column title: the context's own, else its words upper-cased (`LocalVolumes`: `LOCAL VOLUMES`)."""
    if known and name in known:
        return known[name]
    words = "".join(f" {c}" if i and "A" <= c <= "Z" and "a" <= name[i - 1] <= "z" else c for i, c in enumerate(name))
    return {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "CreatedSince": "CREATED",
            "VirtualSize": "SIZE"}.get(name, words.upper())
