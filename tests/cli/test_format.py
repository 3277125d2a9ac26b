"""Go templates (cais/cli/gotemplate.py): parsing and executing as Go's text/template, without `re`."""

from __future__ import annotations

import re

import pytest

from cais.cli import format as fmt


@pytest.mark.parametrize("expr", ["", ".ID", ".RunningFor", ".CreatedAt", "json .Labels", ".LocalVolumes",
                                  ".aBC", ".ÉtatX", "upper .NetworkSettings"])
def test_header_as_the_regex(expr: str) -> None:
    """A table header: each field's words upper-cased, through docker's HeaderFunctions unchanged."""
    name = expr.split()[-1].lstrip(".") if expr else ""
    want = {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}.get(
        name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper())
    assert fmt.header("{{" + expr + "}}" if expr else "") == want


def test_render_and_errors() -> None:
    item = {"Names": "web", "State": "running", "Labels": {"k": "v w"}}
    assert fmt.render('{{.Names}}\\t{{- .State -}} {{index .Labels "k"}} {{json .Labels}}', item) == \
        'webrunningv w {"k":"v w"}'  # trim markers eat the tab and the space, as Go
    with pytest.raises(fmt.FormatError, match="unclosed action"):
        fmt.render("{{.Names", item)
    with pytest.raises(fmt.FormatError, match='function "nope" not defined'):
        fmt.render("{{nope .Names}}", item)


def test_json_output_as_json() -> None:
    """`{{json}}`, `--format json` and inspect's indented output: json's text, through fastjson."""
    import json

    from cais import fastjson
    value = [{"Id": "c", "Config": {"Env": ["A=é"], "Labels": {}, "Cmd": []}, "State": {"Pid": 7, "Running": True},
              "Size": 1.5, "Nothing": None, "Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}]
    assert fastjson.dumps(value, indent=4) == json.dumps(value, indent=4)
    assert fastjson.dumps(value, separators=(",", ":")) == json.dumps(value, separators=(",", ":"))
    assert fastjson.dumps({1: [2]}, indent=4) == json.dumps({1: [2]}, indent=4)


def test_go_json_escaping() -> None:
    """Go's encoding/json: UTF-8 kept, U+2028/9 escaped; `<>&` escaped by json.Marshal (contexts) only."""
    from cais import fastjson
    value = {"b": "<é&>\u2028\u2029\x01\n\"\\", "a": [1, None, True, 1.5, {}]}
    assert fastjson.dumps(value, separators=(",", ":"), sort_keys=True, go=True, escape_html=True) == \
        '{"a":[1,null,true,1.5,{}],"b":"\\u003cé\\u0026\\u003e\\u2028\\u2029\\u0001\\n\\"\\\\"}'
    assert fastjson.dumps(value, separators=(",", ":"), go=True) == \
        '{"b":"<é&>\\u2028\\u2029\\u0001\\n\\"\\\\","a":[1,null,true,1.5,{}]}'
    context = fmt.Context({"Z": "<", "A": None}, {"k.x": "v"})
    assert fmt.go_json(context) == '{"A":null,"Z":"\\u003c"}'
    assert fmt.go_json({"List": [context], "Empty": []}) == '{"List":[{"A":null,"Z":"\\u003c"}],"Empty":[]}'
    assert fmt.render('{{.Label "k.x"}} {{.Label "nope"}}|{{.A}}', context) == "v |<nil>"


def test_displayable_ports() -> None:
    """formatter.DisplayablePorts: sorted, consecutive ports grouped, remapped ones last."""
    from cais.cli.contexts import ports
    assert ports([]) == ""
    assert ports([{"PrivatePort": 9001, "PublicPort": 9001, "IP": "0.0.0.0", "Type": "udp"},
                  {"PrivatePort": 9000, "PublicPort": 9000, "IP": "0.0.0.0", "Type": "udp"},
                  {"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"},
                  {"PrivatePort": 80, "PublicPort": 8080, "IP": "::", "Type": "tcp"},
                  {"PrivatePort": 7000, "Type": "tcp"}, {"PrivatePort": 7001, "Type": "tcp"},
                  {"PrivatePort": 7003, "Type": "tcp"}]) == \
        ("7000-7001/tcp, 7003/tcp, 0.0.0.0:9000-9001->9000-9001/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp")


@pytest.mark.parametrize(("text", "width", "want"), [
    ("sh -c 'echo hi && sleep 1'", 20, "sh -c 'echo hi && s…"), ("short", 20, "short"),
    ("你好你好你好你好你好你好", 20, "你好你好你好你好你…"), ("aé" * 12, 20, "aéaéaéaéaéaéaéaéaéa…"),
])
def test_ellipsis(text: str, width: int, want: str) -> None:
    from cais.cli.contexts import ellipsis
    assert ellipsis(text, width) == want


def test_go_quote_and_times() -> None:
    from cais.cli.contexts import go_quote, go_rfc3339_time, truncate_id
    assert go_quote('a "b"\t\\ é\x01\u2028') == '"a \\"b\\"\\t\\\\ é\\x01\\u2028"'
    assert go_rfc3339_time("2026-11-29T16:59:19.120000000Z") == "2026-11-29 16:59:19.12 +0000 UTC"
    assert go_rfc3339_time("2026-11-29T16:59:19Z") == "2026-11-29 16:59:19 +0000 UTC"
    assert truncate_id("sha256:" + "a" * 64) == "a" * 12 and truncate_id("b" * 64) == "b" * 12
