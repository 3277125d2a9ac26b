""".dockerignore rules, with the examples of docker's documentation."""

from __future__ import annotations

import pytest

from cais.image.build.dockerignore import Matcher, read_patterns


def excluded(patterns: str, path: str) -> bool:
    return Matcher.from_text(patterns).excluded(path)


DOC_EXAMPLE = "# comment\n*/temp*\n*/*/temp*\ntemp?\n"


@pytest.mark.parametrize("patterns, path, expected", [
    (DOC_EXAMPLE, "somedir/temporary.txt", True),
    (DOC_EXAMPLE, "somedir/temp", True),
    (DOC_EXAMPLE, "somedir/temp/inside", True),
    (DOC_EXAMPLE, "somedir/subdir/temporary.txt", True),
    (DOC_EXAMPLE, "tempa", True),
    (DOC_EXAMPLE, "tempb", True),
    (DOC_EXAMPLE, "temp", False),
    (DOC_EXAMPLE, "temporary.txt", False),
    (DOC_EXAMPLE, "# comment", False),
    ("**/*.go", "a.go", True),
    ("**/*.go", "x/y/z/a.go", True),
    ("**/*.go", "a.goo", False),
    ("*.md\n!README.md\n", "README.md", False),
    ("*.md\n!README.md\n", "CHANGES.md", True),
    ("*.md\n!README.md\n", "docs/x.md", False),
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md\n", "README-secret.md", False),
    ("/foo/bar\n", "foo/bar", True),
    ("foo/bar/\n", "foo/bar", True),
    ("./foo\n", "foo/x", True),
    ("foo/**\n", "foo/a/b", True),
    ("foo/**\n", "foob", False),
    ("foo/**/bar\n", "foo/bar", True),
    ("foo/**/bar\n", "foo/a/b/bar", True),
    ("a?c\n", "a/c", False),
    ("[a-c]x\n", "bx", True),
    ("[!a-c]x\n", "bx", False),
    ("[!a-c]x\n", "dx", True),
    ("a.b\n", "axb", False),
    ("a\\*b\n", "a*b", True),
    ("a\\*b\n", "axb", False),
    ("  spaced  \n", "spaced", True),
    ("*\n!keep\n", "keep", False),
    ("*\n!keep\n", "other", True),
    ("dir\n!dir/keep\n", "dir/keep", False),
    ("dir\n!dir/keep\n", "dir/other", True),
    ("**\n", "anything/at/all", True),
    (".git\n", ".git/HEAD", True),
])
def test_matches(patterns, path, expected):
    assert excluded(patterns, path) is expected


def test_read_patterns_cleans_paths():
    assert read_patterns("# c\n\n/a/../b/\n! ./c\n//d\n") == ["b", "!c", "d"]


def test_bad_pattern_is_a_clear_error():
    with pytest.raises(ValueError, match="invalid .dockerignore pattern"):
        Matcher.from_text("[unclosed\n")
    with pytest.raises(ValueError, match="illegal exclusion pattern"):
        Matcher.from_text("!\n")


@pytest.mark.parametrize("patterns, directory, expected", [
    ("node_modules\n", "node_modules", False),
    ("dir\n!dir/keep\n", "dir", True),
    ("dir\n!dir/keep\n", "other", False),
    ("*\n!src/*.go\n", "src", True),
    ("*\n!src/*.go\n", "docs", False),
    ("*\n!**/README.md\n", "deep", True),
    ("a\n!a/*/c\n", "a/b", True),
    ("a\n!a/*/c\n", "a/b/c", False),
])
def test_excluded_directories_are_entered_only_when_an_exception_may_apply(patterns, directory, expected):
    assert Matcher.from_text(patterns).may_include_below(directory) is expected
