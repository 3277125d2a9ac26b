"""Reference parsing against the tables of docker's distribution/reference tests."""

import pytest

from cais.image.reference import (
    Reference,
    ReferenceError,
    is_image_id,
    parse,
    parse_docker_ref,
    parse_normalized,
    parse_strict,
)

DIGEST = "sha256:" + "a" * 64

NORMALIZED = [
    # input, full string after `parse`, familiar form
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x/y:t", "localhost:5000/x/y:t", "localhost:5000/x/y:t"),
    ("example.com/app", "example.com/app:latest", "example.com/app:latest"),
    ("example.com:8080/a/b/c", "example.com:8080/a/b/c:latest", "example.com:8080/a/b/c:latest"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
    ("Foo.com/app", "Foo.com/app:latest", "Foo.com/app:latest"),
    ("Uppercase/app", "Uppercase/app:latest", "Uppercase/app:latest"),
    ("a__b/c-d---e_f.g", "docker.io/a__b/c-d---e_f.g:latest", "a__b/c-d---e_f.g:latest"),
    ("a_b.c/d", "a_b.c/d:latest", "a_b.c/d:latest"),  # not a host: docker keeps it as a bare path
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}", f"busybox:1.36@{DIGEST}"),
    (f"localhost:5000/x@{DIGEST}", f"localhost:5000/x@{DIGEST}", f"localhost:5000/x@{DIGEST}"),
    ("app:Tag_1.0-rc", "docker.io/library/app:Tag_1.0-rc", "app:Tag_1.0-rc"),
]


@pytest.mark.parametrize(("text", "full", "familiar"), NORMALIZED)
def test_normalization(text, full, familiar):
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert parse(str(ref)) == ref  # idempotent


def test_fields():
    ref = parse(f"localhost:5000/team/app:v2@{DIGEST}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", "v2", DIGEST)
    assert ref.name == "localhost:5000/team/app"
    assert parse("busybox").familiar_name() == "busybox"
    assert parse_normalized("busybox") == Reference("docker.io", "library/busybox")
    assert parse_normalized("busybox").is_name_only
    assert parse_docker_ref(f"busybox:1@{DIGEST}") == Reference("docker.io", "library/busybox", None, DIGEST)
    assert parse("busybox").with_tag("x").tag == "x"
    assert parse("busybox:1").repository() == Reference("docker.io", "library/busybox")


def test_strict_parse_keeps_names_as_given():
    assert parse_strict("busybox") == Reference("", "busybox")
    assert parse_strict("test.com:5000/repo:tag") == Reference("test.com:5000", "repo", "tag")
    assert parse_strict("test:5000/repo") == Reference("test:5000", "repo")
    assert parse_strict("test:5000") == Reference("", "test", "5000")  # a tag, not a port


INVALID = [
    ("", "invalid reference format"),  # normalized: docker.io/library/ has an empty component
    (":", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    ("busybox@", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),  # hex shorter than 32 fails the grammar
    ("busybox@sha256:" + "a" * 63, "invalid checksum digest length"),
    ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("-busybox", "invalid reference format"),
    ("busybox-", "invalid reference format"),
    ("bu..sybox", "invalid reference format"),
    ("a/b//c", "invalid reference format"),
    ("app:" + "t" * 129, "invalid reference format"),
    ("app:-tag", "invalid reference format"),
    ("Foo", "invalid reference format: repository name (library/Foo) must be lowercase"),
    ("docker.io/Foo", "invalid reference format: repository name (library/Foo) must be lowercase"),
    ("foo/Bar:tag", "invalid reference format: repository name (foo/Bar) must be lowercase"),
    ("example.com/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
    ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 260, "repository name must not be more than 255 characters"),
    ("[fe80::1%eth0]:5000/app", "invalid reference format"),
    ("busybox:tag:tag", "invalid reference format"),
    ("busy box", "invalid reference format"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid(text, message):
    with pytest.raises(ReferenceError) as e:
        parse(text)
    assert str(e.value) == message


def test_strict_errors():
    with pytest.raises(ReferenceError, match="^repository name must have at least one component$"):
        parse_strict("")
    with pytest.raises(ReferenceError, match="^repository name must be lowercase$"):
        parse_strict("Busybox")
    with pytest.raises(ReferenceError, match="^invalid tag format$"):
        parse("busybox").with_tag("-x")


def test_image_ids():
    assert is_image_id("a" * 12) and is_image_id("sha256:" + "b" * 64)
    assert not is_image_id("busybox") and not is_image_id("abc")
