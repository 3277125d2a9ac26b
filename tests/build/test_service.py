"""`cais build` options, docker's POST /build query, and a whole build through run_cli."""

from __future__ import annotations

import io
import os
import re

import pytest

from cais.cli.commands.images import parse_build
from cais.cli.main import CliError
from cais.image.build.service import RequestError, parse_query, run_cli


def parse_cli(argv, environ=None):
    return parse_build(argv, environ)[1]


def test_parse_cli_like_docker(tmp_root):
    req = parse_cli(["-t", "a:1", "--tag", "b", "-f", "other.Dockerfile", "--build-arg", "X=1", "--build-arg", "FROMENV",
                     "--build-arg", "NOTSET", "--label", "l=v", "--target", "t", "--no-cache", "--cache-from", "c",
                     "--network", "none", "--iidfile", "/tmp/x", "-q", tmp_root],
                    environ={"FROMENV": "e", "SOURCE_DATE_EPOCH": "10"})
    o = req.options
    assert o.tags == ["a:1", "b"] and o.build_args == {"X": "1", "FROMENV": "e"} and o.labels == {"l": "v"}
    assert (o.target, o.no_cache, o.cache_from, o.network, o.source_date_epoch) == ("t", True, ["c"], "none", 10)
    assert req.dockerfile == os.path.abspath("other.Dockerfile") and req.quiet and req.iidfile == "/tmp/x"


@pytest.mark.parametrize("argv, message, status", [
    ([], "'cais build' requires 1 argument", 1),
    (["--bogus", "."], "unknown flag: --bogus", 125),
    (["--progress", "x", "."], 'invalid argument "x" for "--progress" flag', 125),
    (["--build-arg", "=x", "."], "the name is empty", 125),
    (["--help"], "Usage:  cais build [OPTIONS] PATH | URL | -", 0),
])
def test_parse_cli_errors(argv, message, status):
    """docker's flag forms, words and exit statuses (the CLI's parser)."""
    with pytest.raises(CliError, match=re.escape(message)) as e:
        parse_cli(argv, environ={})
    assert e.value.status == status


def test_parse_query_like_docker():
    req = parse_query({"t": "x", "dockerfile": "sub/Dockerfile", "buildargs": '{"A": "1", "B": null}',
                       "labels": '{"l": "v"}', "cachefrom": '["c"]', "nocache": "1", "networkmode": "bridge",
                       "target": "s", "q": "true"}, tags=["x", "y"])
    o = req.options
    assert o.tags == ["x", "y"] and o.build_args == {"A": "1"} and o.labels == {"l": "v"}
    assert (o.cache_from, o.no_cache, o.network, o.target) == (["c"], True, "default", "s")
    assert (req.context, req.dockerfile, req.quiet) == ("-", "sub/Dockerfile", True)
    for bad in ({"buildargs": "{"}, {"labels": "[]"}, {"buildargs": '{"a": 1}'}, {"remote": "https://x"}):
        with pytest.raises(RequestError):
            parse_query(bad)


def test_run_cli_builds_tags_and_writes_iidfile(cais, tmp_root):
    ctx = os.path.join(tmp_root, "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "build.Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN echo from-run\nLABEL a=b\n")
    iid = os.path.join(tmp_root, "iid")
    out, err = io.StringIO(), io.StringIO()
    code = run_cli(cais.store, cais.builder.root, parse_cli(["-t", "cli:1", "-t", "cli:2", "--label", "x=y", "--iidfile", iid,
                                                   "-f", os.path.join(ctx, "build.Dockerfile"), ctx]),
                   stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    with open(iid) as f:
        image_id = f.read()
    assert "from-run" in out.getvalue() and f"Successfully built {image_id[7:19]}" in out.getvalue()
    inspect = cais.store.inspect("cli:2")
    assert inspect["Id"] == image_id and inspect["Config"]["Labels"] == {"a": "b", "x": "y"}
    # a Dockerfile on stdin, with an empty context
    out, err = io.StringIO(), io.StringIO()
    code = run_cli(cais.store, cais.builder.root, parse_cli(["-q", "-"]), stdin=io.BytesIO(b"FROM busybox\nCOPY x /\n"),
                   stdout=out, stderr=err)
    assert code == 1 and err.getvalue().startswith("ERROR: Dockerfile:2: COPY failed: file not found")
    assert out.getvalue() == ""


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_api_build_streams_dockers_messages(cais):
    from cais.image.build.service import api_build

    body = _tar({"Dockerfile": b"FROM busybox\nARG A\nRUN echo arg=$A\n", "x": b"1"})
    messages = list(api_build(cais.store, cais.builder.root, body,
                              {"t": ["api:1", "api:2"], "buildargs": '{"A": "yes"}'}))
    streams = "".join(m.get("stream", "") for m in messages)
    assert "Step 3/3 : RUN echo arg=$A\n" in streams and "arg=yes\n" in streams
    image_id = next(m["aux"]["ID"] for m in messages if "aux" in m)
    assert streams.endswith(f"Successfully built {image_id[7:19]}\nSuccessfully tagged api:1\nSuccessfully tagged api:2\n")
    quiet = list(api_build(cais.store, cais.builder.root, _tar({"Dockerfile": b"FROM busybox\nRUN true\n"}), {"q": "1"}))
    assert [m for m in quiet if "stream" in m][-1]["stream"].startswith("sha256:") and len(quiet) == 2
    bad = list(api_build(cais.store, cais.builder.root, _tar({"Dockerfile": b"FROM busybox\nNOPE\n"}), {}))
    assert bad[-1]["error"] == "Dockerfile:2: unknown instruction: NOPE"
    assert list(api_build(cais.store, cais.builder.root, io.BytesIO(b""), {"labels": "{"}))[0]["error"].startswith(
        "invalid labels")


def test_api_build_cancelled_when_the_client_goes_away(cais):
    from cais.image.build.service import api_build
    from tests.build.conftest import leftovers

    body = _tar({"Dockerfile": b"FROM busybox\nRUN echo start; sleep 1; echo end\nRUN true\n"})
    stream = api_build(cais.store, cais.builder.root, body, {"t": "never"})
    for message in stream:
        if "start" in message.get("stream", ""):
            break
    stream.close()
    assert not cais.builder.has_image("never")
    assert leftovers(cais.top) == []


def test_missing_base_images_are_pulled(cais, tmp_root):
    import asyncio

    from cais.image.archive import _image_manifest
    from cais.image.reference import parse
    from cais.registry.push import push
    from tests.build.conftest import make_cais
    from tests.peers import _unmount_under
    from tests.registry.conftest import cais_registry

    with cais_registry() as registry:
        ref = parse(f"{registry.host}/library/busybox:1")
        digest, _ = _image_manifest(cais.store, cais.store.resolve("busybox:latest"))
        asyncio.run(push(ref, cais.store.content, digest))
        ctx = os.path.join(tmp_root, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {registry.host}/library/busybox:1\nRUN echo pulled-and-ran\n")
        top = os.path.join(tmp_root, "empty-store")
        empty = make_cais(top)
        try:
            out, err = io.StringIO(), io.StringIO()
            assert run_cli(empty.store, empty.builder.root, parse_cli(["-t", "pulled", ctx]), stdout=out, stderr=err) == 0, \
                err.getvalue()
            assert f"Pulling {registry.host}/library/busybox:1" in out.getvalue() and "pulled-and-ran" in out.getvalue()
            assert empty.builder.has_image(f"{registry.host}/library/busybox:1") and empty.builder.has_image("pulled")
            with open(os.path.join(ctx, "Dockerfile"), "w") as f:  # by digest: the pull recorded it
                f.write(f"FROM {registry.host}/library/busybox@{digest}\nRUN echo by-digest\n")
            out = io.StringIO()
            assert run_cli(empty.store, empty.builder.root, parse_cli([ctx]), stdout=out, stderr=err) == 0, err.getvalue()
            assert "by-digest" in out.getvalue() and "Pulling" not in out.getvalue()
            with open(os.path.join(ctx, "Dockerfile"), "w") as f:
                f.write(f"FROM {registry.host}/library/nothere:1\n")
            assert run_cli(empty.store, empty.builder.root, parse_cli([ctx]), stdout=out, stderr=err) == 1
            assert f"FROM {registry.host}/library/nothere:1: pull failed" in err.getvalue()
        finally:
            empty.store.close()
            _unmount_under(top)


def test_context_tar_like_dockers_cli(tmp_root):
    import tarfile

    from cais.image.build.service import context_tar

    ctx = os.path.join(tmp_root, "ctx")
    os.makedirs(os.path.join(ctx, "sub"))
    for rel, text in (("Dockerfile", "FROM a\n"), (".dockerignore", "*.log\nDockerfile\n"), ("x.log", "l"),
                      ("sub/keep", "k"), ("sub/Dockerfile.dev", "FROM dev\n")):
        with open(os.path.join(ctx, rel), "w") as f:
            f.write(text)

    def names(data: bytes) -> set[str]:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name for m in tar}

    data, name = context_tar(ctx, None)
    assert name is None and names(data) == {".dockerignore", "Dockerfile", "sub", "sub/keep", "sub/Dockerfile.dev"}
    data, name = context_tar(ctx, os.path.join(ctx, "sub", "Dockerfile.dev"))
    assert name == "sub/Dockerfile.dev"
    data, name = context_tar(ctx, "-", io.BytesIO(b"FROM stdin\n"))
    assert name is not None and name.startswith(".dockerfile.") and name in names(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None and member.read() == b"FROM stdin\n"
