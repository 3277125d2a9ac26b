"""Build contexts: directories, tarballs, stdin, .dockerignore, and paths that try to escape."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from cais.image.build.context import BuildContext, ContextError


def make_tree(root: str, files: dict[str, str | None]) -> None:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content is None:
            os.makedirs(path, exist_ok=True)
        elif content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            with open(path, "w") as f:
                f.write(content)


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compression) as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tar.addfile(info, io.BytesIO(e[1]))
    return buf.getvalue()


@pytest.fixture
def ctx_dir(tmp_root):
    root = os.path.join(tmp_root, "ctx")
    make_tree(root, {
        "Dockerfile": "FROM scratch\n", "other.Dockerfile": "FROM busybox\n",
        ".dockerignore": "*.md\n!README.md\nsecret\n", "README.md": "r", "NOTES.md": "n",
        "secret": "s", "src/a.txt": "a", "src/b.txt": "b", "src/sub/c.txt": "c",
        "link-in": "->src/a.txt", "link-out": "->../../etc/passwd", "link-abs": "->/etc/passwd",
        "dirlink": "->src", "empty": None,
    })
    return root


def test_directory_context_and_dockerignore(ctx_dir):
    with BuildContext.open(ctx_dir) as ctx:
        assert ctx.dockerfile == b"FROM scratch\n"
        assert ctx.glob("*.md") == [("README.md", "README.md")]
        assert ctx.glob("secret") == []
        assert ctx.glob("src/*.txt") == [("src/a.txt", "src/a.txt"), ("src/b.txt", "src/b.txt")]
        assert ctx.glob("s?c/sub/*") == [("src/sub/c.txt", "src/sub/c.txt")]
        assert ctx.glob("dirlink/*.txt") == [("dirlink/a.txt", "src/a.txt"), ("dirlink/b.txt", "src/b.txt")]
        assert ctx.glob("link-*n") == [("link-in", "src/a.txt")]
        assert ctx.glob("./link-in") == [("link-in", "src/a.txt")]
        assert ctx.glob("nothing*") == []
        assert ctx.resolve("link-in") == "src/a.txt"
        assert ctx.resolve("dirlink/sub/c.txt") == "src/sub/c.txt"
        assert ctx.resolve("link-in", follow=False) == "link-in"
        assert ctx.resolve("./src/../src/a.txt") == "src/a.txt"
        names = [rel for rel, _ in ctx.walk("")]
        assert "NOTES.md" not in names and "secret" not in names and "src/sub/c.txt" in names
        assert names.index("src") < names.index("src/a.txt")


def test_other_dockerfile_and_its_own_ignore_file(ctx_dir):
    with open(os.path.join(ctx_dir, "other.Dockerfile.dockerignore"), "w") as f:
        f.write("src\n")
    with BuildContext.open(ctx_dir, "other.Dockerfile") as ctx:
        assert ctx.dockerfile == b"FROM busybox\n"
        assert ctx.glob("src") == [] and ctx.glob("NOTES.md") == [("NOTES.md", "NOTES.md")]


def test_missing_dockerfile_and_context(ctx_dir):
    with pytest.raises(ContextError, match="cannot find Dockerfile 'nope'"):
        BuildContext.open(ctx_dir, "nope")
    with pytest.raises(ContextError, match="not found"):
        BuildContext.open(os.path.join(ctx_dir, "missing-dir"))


@pytest.mark.parametrize("path, message", [
    ("../x", "forbidden path outside the build context"),
    ("src/../../x", "forbidden path outside the build context"),
    ("link-out", "symlink link-out -> ../../etc/passwd points outside the build context"),
    ("link-abs", "symlink link-abs -> /etc/passwd points outside the build context"),
])
def test_paths_outside_are_refused(ctx_dir, path, message):
    with BuildContext.open(ctx_dir) as ctx, pytest.raises(ContextError, match=message):
        ctx.glob(path)


def test_checksum_follows_content_and_mode_not_mtime(ctx_dir):
    with BuildContext.open(ctx_dir) as ctx:
        first = ctx.checksum(["src"])
        os.utime(os.path.join(ctx_dir, "src/a.txt"), (1, 1))
        assert ctx.checksum(["src"]) == first
        os.chmod(os.path.join(ctx_dir, "src/a.txt"), 0o600)
        second = ctx.checksum(["src"])
        assert second != first
        with open(os.path.join(ctx_dir, "src/sub/c.txt"), "w") as f:
            f.write("changed")
        assert ctx.checksum(["src"]) != second


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_tarball_context(tmp_root, compression):
    path = os.path.join(tmp_root, "ctx.tar")
    with open(path, "wb") as f:
        f.write(tar_bytes([("Dockerfile", b"FROM scratch\n"), ("dir/f", b"x")], compression))
    ctx = BuildContext.open(path, tmp_dir=tmp_root)
    root = ctx.root
    assert ctx.dockerfile == b"FROM scratch\n" and ctx.glob("dir/f") == [("dir/f", "dir/f")]
    ctx.close()
    assert not os.path.exists(root)


def test_stdin_dockerfile_or_tar(tmp_root):
    with BuildContext.open("-", stdin=io.BytesIO(b"FROM scratch\nCOPY x /\n"), tmp_dir=tmp_root) as ctx:
        assert ctx.dockerfile.startswith(b"FROM scratch") and list(ctx.walk("")) == []
    data = tar_bytes([("Dockerfile", b"FROM scratch\n"), ("f", b"1")])
    with BuildContext.open("-", stdin=io.BytesIO(data), tmp_dir=tmp_root) as ctx:
        assert ctx.glob("f") == [("f", "f")]


def test_dockerfile_from_stdin_with_directory_context(ctx_dir):
    with BuildContext.open(ctx_dir, "-", stdin=io.BytesIO(b"FROM other\n")) as ctx:
        assert ctx.dockerfile == b"FROM other\n" and ctx.glob("src/a.txt") == [("src/a.txt", "src/a.txt")]


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("entries, message", [
    ([("../evil", b"x")], "outside the context"),
    ([_symlink("up", "/tmp"), ("up/evil", b"x")], "goes through a symlink"),
    ([tarfile.TarInfo("dev")], None),
])
def test_hostile_tarballs_are_refused(tmp_root, entries, message):
    if message is None:
        entries[0].type = tarfile.CHRTYPE
        message = "device node"
    path = os.path.join(tmp_root, "ctx.tar")
    with open(path, "wb") as f:
        f.write(tar_bytes([("Dockerfile", b"FROM scratch\n"), *entries]))
    before = set(os.listdir(tmp_root))
    with pytest.raises(ContextError, match=message):
        BuildContext.open(path, tmp_dir=tmp_root)
    assert set(os.listdir(tmp_root)) == before
    assert not os.path.exists("/tmp/evil")


@pytest.mark.parametrize("entries, dockerfile, message", [
    ([_symlink("Dockerfile", "/etc/passwd")], None, "points outside the build context"),
    ([("Dockerfile", b"FROM x\n")], "../../../../etc/passwd", "forbidden path outside the build context"),
    ([("Dockerfile", b"FROM x\n"), _symlink(".dockerignore", "/etc/shadow")], None, "points outside"),
])
def test_a_client_cannot_read_host_files_as_dockerfile(tmp_root, entries, dockerfile, message):
    data = tar_bytes(entries)
    with pytest.raises(ContextError, match=message):
        BuildContext.open("-", dockerfile, stdin=io.BytesIO(data), tmp_dir=tmp_root)
    assert os.listdir(tmp_root) == []


def test_corrupt_tarball_is_a_clear_error(tmp_root):
    data = tar_bytes([("Dockerfile", b"FROM scratch\n" * 200)], "gz")
    with pytest.raises(ContextError, match="context tarball"):
        BuildContext.open("-", stdin=io.BytesIO(data[:len(data) // 2] + b"\0" * 64), tmp_dir=tmp_root)
    assert os.listdir(tmp_root) == []


def test_stdin_context_is_streamed_in_small_reads(tmp_root):
    class Trickle(io.RawIOBase):
        """A request body that returns at most 100 bytes a read."""
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, n: int = -1) -> bytes:
            n = 100 if n is None or n < 0 else min(n, 100)
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

    data = tar_bytes([("Dockerfile", b"FROM scratch\n"), ("big", b"x" * 100_000)], "gz")
    with BuildContext.open("-", stdin=Trickle(data), tmp_dir=tmp_root) as ctx:  # type: ignore[arg-type]
        assert os.path.getsize(ctx.path("big")) == 100_000
