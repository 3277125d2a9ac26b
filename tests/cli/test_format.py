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


_ITEM = {"Name": "/web", "State": {"Status": "running", "Running": True, "ExitCode": 0, "Pid": 42},
         "Config": {"Labels": {"b": "2", "a": "1"}, "Env": ["A=1", "B=2"], "Cmd": None},
         "NetworkSettings": {"Networks": {"net2": {"IPAddress": "10.0.0.2"}, "net1": {"IPAddress": "10.0.0.1"}}},
         "RestartCount": 3}


@pytest.mark.parametrize(("template", "want"), [
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.0.0.1 10.0.0.2 "),  # maps: sorted keys
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range $i, $e := .Config.Env}}{{$i}}{{$e}}{{else}}none{{end}}", "0A=11B=2"),
    ("{{range .Config.Cmd}}x{{else}}none{{end}}", "none"), ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}", "A=1"),
    ("{{range .Config.Env}}{{if eq . \"A=1\"}}{{continue}}{{end}}{{.}}{{end}}", "B=2"),
    ("{{if .State.Running}}up{{else if .Name}}named{{else}}down{{end}}", "up"),
    ("{{if not .State.Running}}up{{else if .Name}}named{{else}}down{{end}}", "named"),
    ("{{with .State}}{{.Status}}/{{.ExitCode}}{{end}}", "running/0"), ("{{with .Config.Cmd}}x{{else}}y{{end}}", "y"),
    ("{{with .Config.Cmd}}x{{else with .Name}}{{.}}{{end}}", "/web"),
    ("{{$n := .Name}}{{with .State}}{{$n}} {{$.RestartCount}}{{end}}", "/web 3"),
    ("{{$x := 1}}{{if .Name}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{.Name | upper | printf \"<%s>\"}}", "</WEB>"), ("{{(index .Config.Env 1) | len}}", "3"),
    ("a {{- /* a comment */ -}} b", "ab"), ("a  {{- .Name}}  {{- 1 -}}  \n b", "a/web1b"),
    ("{{-3}} {{- -3}}", "-3-3"), ("{{\"}}\"}}", "}}"), ("{{`a\\n`}} {{\"\\u00e9\\t\"}}", "a\\n é\t"),
    ("{{.Name\n}}", "/web"),  # newlines inside actions, as Go 1.16+
    ("{{true}} {{print nil}}x {{1.5}} {{1e21}} {{0x1f}} {{'a'}}", "true <nil>x 1.5 1e+21 31 97"),
    ("{{and 1 0 2}} {{or 0 \"\" 3}} {{not \"\"}} {{and .Name .State.Running}}", "0 3 true true"),
    ("{{eq .RestartCount 1 2 3}} {{ne .Name \"/web\"}} {{lt 1.5 2.5}} {{ge \"b\" \"a\"}}", "true false true true"),
    ("{{index .NetworkSettings.Networks \"net1\" | len}} {{index .Config.Labels \"zz\"}}|", "1 |"),
    ("{{slice .Name 1 3}} {{slice .Config.Env 1}} {{len .Config.Labels}} {{len \"é\"}}", "we [B=2] 2 2"),
    ("{{printf \"%-6s|%4d|%04d|%x|%q|%t|%v|%.2f|%5.1f%%\" .Name 7 7 255 .Name true .Config.Env 3.14159 9.99}}",
     '/web  |   7|0007|ff|"/web"|true|[A=1 B=2]|3.14| 10.0%'),
    ("{{printf \"%d %s\" \"x\"}} {{printf \"%s\" 1 2}}", "%!d(string=x) %!s(MISSING) %!s(int=1)%!(EXTRA int=2)"),
    ("{{print 1 2 \"a\" \"b\" 3}}|{{println 1 \"a\"}}", "1 2ab3|1 a\n"),  # a space between operands when neither is a string
    ("{{json .Config.Labels}} {{json .Config.Cmd}} {{split \"a,b\" \",\"}} {{join .Config.Env \",\"}}",
     '{"b":"2","a":"1"} null [a b] A=1,B=2'),
    ("{{title \"hello wORLD-x\"}}|{{pad .Name 1 2}}|{{pad \"\" 1 1}}|{{truncate .Name 2}}|{{truncate .Name 9}}",
     "Hello WORLD-X| /web  ||/w|/web"),
])
def test_go_template(template: str, want: str) -> None:
    assert fmt.render(template, _ITEM, escapes=False) == want


@pytest.mark.parametrize(("template", "error"), [
    ("{{.Name", "template parsing error: template: :1: unclosed action"),
    ("{{if .Name}}x", "template parsing error: template: :1: unexpected EOF"),
    ("x\n{{end}}", "template parsing error: template: :2: unexpected {{end}}"),
    ("{{else}}", "template parsing error: template: :1: unexpected {{else}}"),
    ("{{range .A}}{{else}}{{else}}{{end}}", "template parsing error: template: :1: expected end; found {{else}}"),
    ("{{nope .Name}}", 'template parsing error: template: :1: function "nope" not defined'),
    ("{{$x}}", 'template parsing error: template: :1: undefined variable "$x"'),
    ("{{with $x := 1}}{{end}}{{$x}}", 'template parsing error: template: :1: undefined variable "$x"'),
    ("{{if}}{{end}}", "template parsing error: template: :1: missing value for if"),
    ("{{}}", "template parsing error: template: :1: missing value for command"),
    ("{{\"open}}", "template parsing error: template: :1: unterminated quoted string"),
    ("{{/* open }}", "template parsing error: template: :1: unclosed comment"),
    ("{{'ab'}}", "template parsing error: template: :1: malformed character constant: 'ab'"),
    ('{{"\\z"}}', "template parsing error: template: :1: invalid syntax"),
    ("{{" + "(" * 3000 + ".Name" + ")" * 3000 + "}}", "template parsing error: template: :1: max expression depth exceeded"),
    ("{{break}}", "template parsing error: template: :1: {{break}} outside {{range}}"),
    ("{{(.Name}}", "template parsing error: template: :1: unclosed left paren"),
    ("{{.Name)}}", "template parsing error: template: :1: unexpected right paren"),
    ("{{.Name | 3}}", "template parsing error: template: :1: non executable command in pipeline stage 2"),
    ("{{#}}", 'template parsing error: template: :1: unexpected "#" in command'),
    ("{{end}", "template parsing error: template: :1: bad character U+007D '}'"),
    ("{{range $a, $b, $c := .A}}{{end}}", "template parsing error: template: :1: too many declarations in range"),
    ("{{template \"x\"}}", "template parsing error: template: :1: {{template}} is not supported by cais"),
    ("{{index .Config.Env 5}}",
     'template: :1:2: executing "" at <index .Config.Env 5>: error calling index: index out of range: 5'),
    ("{{eq .Name 1}}", 'template: :1:2: executing "" at <eq .Name 1>: error calling eq: incompatible types for comparison'),
    ("x\n {{upper .RestartCount}}",
     'template: :2:9: executing "" at <.RestartCount>: wrong type for value; expected string; got json.Number'),
    ("{{truncate .Name \"a\"}}", 'template: :1:17: executing "" at <"a">: expected integer; found "a"'),
    ("{{range .Name}}{{end}}", 'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
    ("{{.State.Nope}}", 'template: :1:8: executing "" at <.State.Nope>: map has no entry for key "Nope"'),
    ("{{.Name.X}}", 'template: :1:7: executing "" at <.Name.X>: can\'t evaluate field X in type interface {}'),
    ("{{not 1 2}}", 'template: :1:2: executing "" at <not>: wrong number of args for not: want 1 got 2'),
    ("{{\"a\" | .Name}}", 'template: :1:8: executing "" at <.Name>: Name is not a method but has arguments'),
])
def test_go_template_errors(template: str, error: str) -> None:
    with pytest.raises(fmt.FormatError) as e:
        fmt.render(template, _ITEM, escapes=False)
    assert str(e.value) == error


def test_go_template_contexts() -> None:
    """A context is a struct: a missing field is an error, a nil one `<nil>`; `.Label` is its method;
    a table's header runs the template on the columns' titles with docker's HeaderFunctions."""
    context = fmt.Context({"Names": "web", "Platform": None, "Labels": "a=1"}, {"a": "1"}, "*formatter.ContainerContext")
    assert fmt.render('{{.Platform}} {{if .Platform}}x{{end}}{{.Label "a"}}{{.Label "b"}}', context) == "<nil> 1"
    with pytest.raises(fmt.FormatError, match="can't evaluate field Nope in type \\*formatter.ContainerContext"):
        fmt.render("{{.Nope}}", context)
    assert fmt.header('{{.Names | printf "%.2s"}}\t{{if .Ports}}{{.Ports}}{{end}}\t{{json .Labels}}\t{{.Label "x.y"}}',
                      {"Names": "NAMES"}) == "NA\tPORTS\tLABELS\ty"


@pytest.mark.parametrize("value", [0.1, 1.0, 1e20, 1e21, 1.5e-5, 0.0001, 123456.789, -2.5, 1e-7])
def test_go_float(value: float) -> None:
    """%v of a float64 as Go: shortest digits, exponent below 1e-4 and from 1e21."""
    from cais.cli.gotemplate import go_float
    want = {0.1: "0.1", 1.0: "1", 1e20: "100000000000000000000", 1e21: "1e+21", 1.5e-5: "1.5e-05", 0.0001: "0.0001",
            123456.789: "123456.789", -2.5: "-2.5", 1e-7: "1e-07"}[value]
    assert go_float(value) == want


def test_garbage_templates_fail_cleanly() -> None:
    """Any template renders or fails with one line (a FormatError), never a Python exception."""
    import random
    rng = random.Random(7)
    pieces = ["{{", "}}", "{{-", "-}}", " ", ".Name", ".State", ".Config.Env", "$", "$x", ":=", "=", "|", "(", ")",
              ",", "if", "else", "end", "range", "with", "break", "continue", "index", "printf", '"%d %s %q"', "len",
              "slice", "eq", "lt", "and", "not", "json", "split", "pad", "truncate", "1", "-1", "1.5", "'a'", '"s"',
              "`r`", "nil", "true", "/*", "*/", "\n", "\\", '"', "é", "\x01", "#", "0x", "1e", "\\t"]
    for _ in range(6000):
        template = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 16)))
        try:
            out = fmt.render(template, _ITEM)
        except fmt.FormatError as e:
            assert "\n" not in str(e).strip() or "template" in str(e), repr(template)
        else:
            assert isinstance(out, str)
