"""Variable substitution as docker's Dockerfile reference and buildkit's lexer tests describe it."""

from __future__ import annotations

import pytest

from cais.image.build.shell_words import Lexer, ShellSyntaxError

ENV = {"FOO": "/bar", "EMPTY": "", "SPACED": "a b  c", "P": "/usr/local/bin", "abc": "hello"}


@pytest.mark.parametrize("word, expected", [
    ("$FOO", "/bar"),
    ("${FOO}", "/bar"),
    ("${FOO}/baz", "/bar/baz"),
    ("$FOO/baz", "/bar/baz"),
    ("\\$FOO", "$FOO"),
    ("'$FOO'", "$FOO"),
    ('"$FOO"', "/bar"),
    ('"\\$FOO"', "$FOO"),
    ('"a\\b"', "a\\b"),
    ("${UNSET}", ""),
    ("${UNSET:-word}", "word"),
    ("${EMPTY:-word}", "word"),
    ("${EMPTY-word}", ""),
    ("${UNSET-word}", "word"),
    ("${FOO:-word}", "/bar"),
    ("${FOO:+word}", "word"),
    ("${EMPTY:+word}", ""),
    ("${EMPTY+word}", "word"),
    ("${UNSET+word}", ""),
    ("${UNSET:-$FOO}", "/bar"),
    ("${UNSET:-'x y'}", "x y"),
    ("${P#*/}", "usr/local/bin"),
    ("${P##*/}", "bin"),
    ("${P%/*}", "/usr/local"),
    ("${P%%/*}", ""),
    ("${P/local/opt}", "/usr/opt/bin"),
    ("${P//\\//:}", ":usr:local:bin"),
    ("$", "$"),
    ("a$", "a$"),
    ("$1", ""),
    ("${abc}def", "hellodef"),
    ("x\\ y", "x y"),
])
def test_process_word(word, expected):
    assert Lexer().process_word(word, ENV) == expected


@pytest.mark.parametrize("text, expected", [
    ("a b", ["a", "b"]),
    ("$SPACED", ["a", "b", "c"]),
    ('"$SPACED"', ["a b  c"]),
    ("'a b' c", ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ('""', []),
])
def test_process_words(text, expected):
    assert Lexer().process_words(text, ENV) == expected


def test_backtick_escape():
    assert Lexer("`").process_word("`$FOO c:\\dir", ENV) == "$FOO c:\\dir"


@pytest.mark.parametrize("word, message", [
    ("${", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:x}", "bad substitution"),
    ("${FOO", "missing"),
    ("'abc", "single-quote"),
    ('"abc', "double-quote"),
    ("${UNSET?must be set}", "UNSET: must be set"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${FOO!x}", "unsupported modifier"),
])
def test_errors(word, message):
    with pytest.raises(ShellSyntaxError, match=message):
        Lexer().process_word(word, ENV)


def test_skip_unset_keeps_references():
    assert Lexer(skip_unset=True).process_word("$A ${B} ${C:-x} $FOO", ENV) == "$A ${B} ${C:-x} /bar"
