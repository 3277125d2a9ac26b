"""Go templates without `re`: the scanner reads templates as the regular expressions it replaced."""

from __future__ import annotations

import random
import re

import pytest

from cais.cli import format as fmt

_ACTION = r"{{-?\s*(.*?)\s*-?}}"  # what format.py used before it scanned templates itself


def _templates(n: int) -> list[str]:
    rng = random.Random(5)
    pieces = ["{{", "}}", "{", "}", "-", " ", "\n", "\t", ".A", "x", '"', "json", "\u2003"]
    return [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14))) for _ in range(n)
    ] + ["{{.A}}", "{{- .A -}}", "{{-}}", "{{--}}", "{{ - }}", "{{{.A}}}", "{{.A\n}}", "{{\n.A\n}}", "a{{b", "}}{{"]


def test_actions_as_the_regex() -> None:
    for template in _templates(4000):
        assert fmt._actions(template, lambda e: f"<{e}>") == re.sub(_ACTION, lambda m: f"<{m.group(1)}>", template), \
            repr(template)


def test_words_as_the_regex() -> None:
    for expr in _templates(4000):
        assert fmt._words(expr) == re.findall(r'"[^"]*"|\S+', expr), repr(expr)


@pytest.mark.parametrize("expr", ["", ".ID", ".RunningFor", ".CreatedAt", "json .Labels", ".LocalVolumes",
                                  ".aBC", ".ÉtatX", "upper .NetworkSettings"])
def test_header_as_the_regex(expr: str) -> None:
    name = expr.split()[-1].lstrip(".") if expr else ""
    want = {"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}.get(
        name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper())
    assert fmt._header(expr) == want


def test_render_and_errors() -> None:
    item = {"Names": "web", "State": "running", "Labels": {"k": "v w"}}
    assert fmt.render('{{.Names}}\\t{{- .State -}} {{index .Labels "k"}} {{json .Labels}}', item) == \
        'web\trunning v w {"k":"v w"}'
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
