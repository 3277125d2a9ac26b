"""cais build on its own: the cache, stages, here-documents, errors and clean-up."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading

import pytest

from cais.image.build.builder import BuildError
from cais.image.build.events import StepCached
from cais.image.rootfs import export_image
from tests.build.conftest import leftovers, make_cais


def write(root: str, files: dict[str, str]) -> str:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            with open(path, "w") as f:
                f.write(content)
    return root


def rootfs_files(cais, tag: str) -> dict[str, tarfile.TarInfo | bytes]:
    out = io.BytesIO()
    export_image(cais.store, tag, out)
    files: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        for m in tar:
            name = m.name.strip("./")
            f = tar.extractfile(m) if m.isreg() else None
            files[name] = f.read() if f else m
    return files


def cached_steps(cais) -> int:
    return sum(isinstance(e, StepCached) for e in cais.events)


def test_rebuild_hits_the_cache_and_gives_the_same_image(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {
        "Dockerfile": "FROM busybox\nENV A=1\nCOPY f /f\nRUN cat /f > /g\nCOPY other /other\nCMD [\"sh\"]\n",
        "f": "one\n", "other": "x\n"})
    first = cais.build(ctx, tags=["app"])
    second = cais.build(ctx)
    assert second == first and cached_steps(cais) == 5
    os.utime(os.path.join(ctx, "f"), (1, 1))  # times are not content
    assert cais.build(ctx) == first
    with open(os.path.join(ctx, "other"), "w") as f:
        f.write("changed\n")
    third = cais.build(ctx)
    assert third != first and cached_steps(cais) == 3  # ENV, COPY f, RUN
    os.chmod(os.path.join(ctx, "f"), 0o600)  # metadata is
    cais.build(ctx)
    assert cached_steps(cais) == 1
    assert cais.build(ctx, no_cache=True) != third and cached_steps(cais) == 0


def test_build_args_in_use_are_part_of_the_key(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": "FROM busybox\nARG V=1\nRUN echo $V > /v\n"})
    one = cais.build(ctx)
    assert cais.build(ctx, build_args={"V": "1"}) == one
    two = cais.build(ctx, build_args={"V": "2"}, tags=["v2"])
    assert two != one and rootfs_files(cais, "v2")["v"] == b"2\n"
    cais.build(ctx, build_args={"V": "2", "HTTP_PROXY": "http://proxy:1"})
    assert cached_steps(cais) == 1  # proxy args are not part of the cache
    assert any("NOTUSED" in str(e) for e in (cais.build(ctx, build_args={"NOTUSED": "x"}) and cais.events))


def test_source_date_epoch_makes_builds_reproducible(busybox_archive, tmp_root):
    from cais.image.archive import load

    ctx = write(os.path.join(tmp_root, "ctx"), {
        "Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo made > /made && rm /etc/passwd\nLABEL x=y\n", "f": "1\n"})
    ids = []
    for n in range(2):
        c = make_cais(os.path.join(tmp_root, f"store{n}"))
        try:
            load(c.store, io.BytesIO(busybox_archive))
            if n == 0:
                ids.append(c.build(ctx, source_date_epoch=1700000000))
            else:  # as a build argument, the way BuildKit takes it
                ids.append(c.build(ctx, build_args={"SOURCE_DATE_EPOCH": "1700000000"}))
            assert c.store.inspect(ids[-1])["Created"].startswith("2023-11-14T22:13:20")
        finally:
            c.store.close()
            from tests.peers import _unmount_under
            _unmount_under(os.path.join(tmp_root, f"store{n}"))
    assert ids[0] == ids[1]


def test_target_builds_only_the_stages_it_needs(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": """\
FROM busybox AS base
RUN echo base > /base
FROM busybox AS broken
RUN exit 1
FROM base AS app
COPY --from=base /base /copied
FROM broken
"""})
    cais.build(ctx, target="app", tags=["app"])
    files = rootfs_files(cais, "app")
    assert files["base"] == b"base\n" and files["copied"] == b"base\n"
    assert not any("exit 1" in str(getattr(e, "text", "")) for e in cais.events)
    with pytest.raises(BuildError, match="failed to reach build target nope"):
        cais.build(ctx, target="nope")


def test_heredocs(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": """\
FROM busybox
ARG NAME=world
RUN <<EOF
echo "hello $NAME" > /script-out
mkdir /d
EOF
RUN <<EOF
#!/usr/bin/awk -f
BEGIN { print "shebang from awk" > "/d/shebang" }
EOF
RUN cat <<A > /d/a && cat <<B > /d/b
first
A
second
B
COPY <<EOF /d/copied
expanded $NAME
EOF
COPY <<-'EOF' /d/literal
	not expanded $NAME
	EOF
"""})
    cais.build(ctx, tags=["heredoc"])
    files = rootfs_files(cais, "heredoc")
    assert files["script-out"] == b"hello world\n"
    assert files["d/shebang"] == b"shebang from awk\n"
    assert not any(name.startswith("dev/pipes") for name in files)
    assert (files["d/a"], files["d/b"]) == (b"first\n", b"second\n")
    assert files["d/copied"] == b"expanded world\n"
    assert files["d/literal"] == b"not expanded $NAME\n"


def test_chown_user_alone_takes_its_group_and_chmod(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {
        "Dockerfile": "FROM busybox\nCOPY --chown=nobody --chmod=0600 f /x/\nCOPY --chown=7 f /y\nUSER nobody\n"
                      "RUN id > /tmp/id\nCOPY --chown=7 suid /suid\n",
        "f": "1\n", "suid": "#!/bin/sh\n"})
    os.chmod(os.path.join(ctx, "suid"), 0o4755)
    cais.build(ctx, tags=["own"])
    files = rootfs_files(cais, "own")
    x, y = files["x/f"], files["y"]
    assert isinstance(x, bytes) and isinstance(y, bytes)
    out = io.BytesIO()
    export_image(cais.store, "own", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        info = {m.name.strip("./"): m for m in tar}
    assert (info["x/f"].uid, info["x/f"].gid, info["x/f"].mode) == (65534, 65534, 0o600)
    assert (info["x"].uid, info["y"].uid, info["y"].gid) == (65534, 7, 7)
    assert info["suid"].mode == 0o4755  # kept through the chown, as BuildKit does
    assert files["tmp/id"].startswith(b"uid=65534(nobody) gid=65534(nogroup)")


def test_add_url_and_network_none(cais, tmp_root):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = b"downloaded\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/files/data.txt"
        good = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
        ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": f"FROM busybox\nADD --checksum={good} {url} /dl/\n",
                                                    "bad.Dockerfile": f"FROM busybox\nADD --checksum=sha256:00 {url} /x\n"})
        cais.build(ctx, tags=["dl"])
        assert rootfs_files(cais, "dl")["dl/data.txt"] == b"downloaded\n"
        with pytest.raises(BuildError, match="does not match --checksum sha256:00"):
            cais.build(ctx, "bad.Dockerfile")
        with pytest.raises(BuildError, match="needs the network"):
            cais.build(ctx, network="none", no_cache=True)
    finally:
        server.shutdown()
        server.server_close()


def test_run_network_modes(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": """\
FROM busybox
RUN --network=none ls /sys/class/net > /none
RUN --network=host ls /sys/class/net > /host
"""})
    cais.build(ctx, tags=["net"])
    files = rootfs_files(cais, "net")
    assert files["none"] == b"lo\n"
    assert len(files["host"].split()) >= 1


def test_scratch_and_tar_context(cais, tmp_root):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, content in (("Dockerfile", b"FROM scratch\nCOPY hello /\nCMD [\"/hello\"]\n"), ("hello", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path = os.path.join(tmp_root, "ctx.tar.gz")
    with open(path, "wb") as f:
        f.write(data.getvalue())
    image_id = cais.build(path, tags=["scratchy"])
    inspect = cais.store.inspect(image_id)
    assert inspect["Config"]["Cmd"] == ["/hello"]
    assert {k: v for k, v in rootfs_files(cais, "scratchy").items() if k} == {"hello": b"hi\n"}


@pytest.mark.parametrize("files, message", [
    ({"Dockerfile": "FROM busybox\nFOO bar\n"}, "Dockerfile:2: unknown instruction: FOO"),
    ({"Dockerfile": 'FROM busybox\nCMD ["a", 1]\n'}, "Dockerfile:2: when using JSON array syntax"),
    ({"Dockerfile": "FROM busybox\nSHELL /bin/sh -c\n"}, "Dockerfile:2: SHELL requires the arguments to be in JSON"),
    ({"Dockerfile": "FROM busybox\nCOPY --from=nostage /x /y\n"}, "Dockerfile:2: COPY --from=nostage: No such image"),
    ({"Dockerfile": "FROM nosuchimage\n"}, "Dockerfile:1: FROM nosuchimage: No such image"),
    ({"Dockerfile": "FROM busybox\nCOPY ../outside /x\n"}, "Dockerfile:2: COPY failed: forbidden path outside the build context"),
    ({"Dockerfile": "FROM busybox\nCOPY link /x\n", "link": "->/etc/passwd"},
     "Dockerfile:2: COPY failed: symlink link -> /etc/passwd points outside the build context"),
    ({"Dockerfile": "FROM busybox\nCOPY dir/up /x\n", "dir/up": "->../../etc"},
     "points outside the build context"),
    ({"Dockerfile": "FROM busybox\nCOPY missing /x\n"}, "Dockerfile:2: COPY failed: file not found in build context"),
    ({"Dockerfile": "FROM busybox\nCOPY a b /x\n", "a": "", "b": ""}, "the destination must be a directory and end with a /"),
    ({"Dockerfile": "FROM busybox\nRUN echo partial > /f && exit 3\n"},
     "Dockerfile:2: The command '/bin/sh -c echo partial > /f && exit 3' returned a non-zero code: 3"),
    ({"Dockerfile": "FROM busybox\nUSER ghost\nRUN true\n"}, "Dockerfile:3: unable to find user ghost"),
    ({"Dockerfile": 'FROM busybox\nRUN ["/nonexistent", "x"]\n'},
     "Dockerfile:2: RUN failed: exec: \"/nonexistent\": stat /nonexistent: no such file or directory"),
    ({"Dockerfile": "FROM scratch\nRUN true\n"}, "Dockerfile:2: RUN failed: exec: \"/bin/sh\": stat /bin/sh: no such file or directory"),
    ({"Dockerfile": "FROM busybox\nRUN --network=bogus true\n"}, "unknown network mode"),
    ({"Dockerfile": "FROM busybox\nENV A=${B\n"}, "Dockerfile:2: syntax error: missing '}'"),
    ({"Dockerfile": "FROM busybox\nEXPOSE 80/bogus\n"}, "Dockerfile:2: Invalid containerPort: 80/bogus"),
    ({"Dockerfile": "FROM busybox\n", "tag": "Bad Tag"}, "invalid tag 'Bad Tag'"),
    ({"Dockerfile": "FROM busybox\nCOPY --chown=ghost f /x\n", "f": ""}, "unable to find user ghost"),
])
def test_bad_dockerfiles_fail_clearly_and_leave_nothing(shared_cais, tmp_root, files, message):
    cais = shared_cais
    files = dict(files)
    tags = [files.pop("tag")] if "tag" in files else []
    ctx = write(os.path.join(tmp_root, "ctx"), files)
    with pytest.raises(BuildError) as info:
        cais.build(ctx, tags=tags)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert leftovers(cais.top) == []


def test_events_as_docker_json(cais, tmp_root):
    from cais.image.build.events import docker_message

    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": "FROM busybox\nRUN echo out\n"})
    image_id = cais.build(ctx, tags=["j"])
    messages = [m for m in map(docker_message, cais.events) if m]
    streams = "".join(m.get("stream", "") for m in messages)
    assert "Step 1/2 : FROM busybox\n" in streams and "out\n" in streams
    assert {"aux": {"ID": image_id}} in messages
    json.dumps(messages)


def test_cache_from_an_image(cais, tmp_root):
    from cais.image.build.builder import Builder
    from cais.image.build.runner import Runner

    ctx = write(os.path.join(tmp_root, "ctx"), {
        "Dockerfile": "FROM busybox\nENV A=1\nCOPY f /f\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nCMD [\"sh\"]\n", "f": "1\n"})
    cais.build(ctx, tags=["origin"])
    stamp = rootfs_files(cais, "origin")["stamp"]
    # A builder with an empty cache of its own (another machine, a CI runner): only --cache-from helps.
    cais.builder = Builder(cais.store, Runner(os.path.join(cais.top, "runtime")), os.path.join(cais.top, "build2"))
    cais.build(ctx, tags=["again"], cache_from=["origin", "missing:tag"])
    assert rootfs_files(cais, "again")["stamp"] == stamp
    assert cached_steps(cais) == 2  # COPY and RUN layers came from the image
    assert any("missing:tag" in str(e) for e in cais.events)
    cais.builder = Builder(cais.store, Runner(os.path.join(cais.top, "runtime")), os.path.join(cais.top, "build3"))
    cais.build(ctx, tags=["fresh"])
    assert rootfs_files(cais, "fresh")["stamp"] != stamp


def test_platform_args_and_from_platform(cais, tmp_root):
    from cais.image.platform import host_platform

    host = host_platform()
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": """\
FROM --platform=$BUILDPLATFORM busybox
ARG TARGETARCH
ARG TARGETOS
ENV ARCH=$TARGETARCH OS=$TARGETOS NOTDECLARED=${BUILDARCH:-unset}
"""})
    cais.build(ctx, tags=["plat"])
    env = cais.store.inspect("plat")["Config"]["Env"]
    assert f"ARCH={host.architecture}" in env and "OS=linux" in env and "NOTDECLARED=unset" in env
    other = "linux/s390x" if host.architecture != "s390x" else "linux/amd64"
    write(ctx, {"Dockerfile.other": f"FROM --platform={other} busybox\n"})
    with pytest.raises(BuildError, match=f"Dockerfile.other:1: FROM busybox: the image is for {host}, not {other}"):
        cais.build(ctx, "Dockerfile.other")


def test_run_mounts(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {
        ".dockerignore": "secret\n", "secret": "s\n", "src/a": "a\n", "one": "1\n",
        "Dockerfile": """\
FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
RUN --mount=target=/ctx ls /ctx > /listing && cat /ctx/src/a > /from-ctx
RUN --mount=type=bind,source=one,target=/mnt/one cat /mnt/one > /from-file
RUN --mount=type=bind,from=tools,source=/tool,target=/t cat /t > /from-stage
RUN --mount=type=bind,target=/rw,rw echo scribble > /rw/src/a
RUN --mount=type=cache,target=/var/cache/app,id=c1 echo $(( $(cat /var/cache/app/n 2>/dev/null || echo 0) + 1 )) \\
    > /var/cache/app/n && cp /var/cache/app/n /cache-count
RUN --mount=type=tmpfs,target=/scratch/space echo t > /scratch/space/f && ls /scratch/space > /tmpfs-listing
"""})
    cais.build(ctx, tags=["mnt"])
    files = rootfs_files(cais, "mnt")
    assert files["listing"].split() == [b"Dockerfile", b"one", b"src"]  # .dockerignore'd secret not shown
    assert (files["from-ctx"], files["from-file"], files["from-stage"]) == (b"a\n", b"1\n", b"tool\n")
    assert files["cache-count"] == b"1\n" and files["tmpfs-listing"] == b"f\n"
    with open(os.path.join(ctx, "src/a")) as f:
        assert f.read() == "a\n"  # an rw bind of the context writes to a copy
    for absent in ("ctx", "mnt", "t", "rw", "var/cache/app", "scratch"):
        assert absent not in files, absent  # mount points do not end up in the image
    cais.build(ctx, tags=["mnt2"], no_cache=True)
    assert rootfs_files(cais, "mnt2")["cache-count"] == b"2\n"  # the cache mount outlives the build
    assert leftovers(cais.top) == []


@pytest.mark.parametrize("spec, message", [
    ("type=secret,id=x", "type=secret is not supported"),
    ("type=bogus,target=/x", "unsupported mount type"),
    ("type=cache", "a target is required"),
    ("type=bind,target=/x,color=red", "unexpected key 'color'"),
    ("type=bind,source=nope,target=/x", "--mount: nope not found in the build context"),
])
def test_bad_run_mounts(shared_cais, tmp_root, spec, message):
    cais = shared_cais
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": f"FROM busybox\nRUN --mount={spec} true\n"})
    with pytest.raises(BuildError, match=message):
        cais.build(ctx)
    assert leftovers(cais.top) == []


def test_copy_exclude(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {
        "Dockerfile": "FROM busybox\nCOPY --exclude=*.txt hom* /mydir/\nCOPY --exclude=**/*.log --exclude=skip src /src\n",
        "homer.txt": "x", "homa": "a", "src/keep": "k", "src/a/b.log": "l", "src/skip": "s"})
    cais.build(ctx, tags=["excl"])
    files = {k for k in rootfs_files(cais, "excl") if k.startswith(("mydir", "src"))}
    assert files == {"mydir", "mydir/homa", "src", "src/keep", "src/a"}
    write(ctx, {"parents.Dockerfile": "FROM busybox\nCOPY --parents src/keep /x/\n"})
    with pytest.raises(BuildError, match="--parents is not supported"):
        cais.build(ctx, "parents.Dockerfile")


CRASHING_BUILD = """
import sys
from cais.image.build.builder import BuildOptions
from cais.image.build.context import BuildContext
from tests.build.conftest import make_cais
c = make_cais(sys.argv[1])
with BuildContext.open("-", stdin=open(sys.argv[2], "rb"), tmp_dir=c.builder.tmp_dir) as ctx:
    c.builder.build(ctx, BuildOptions(), lambda e: print(type(e).__name__, flush=True))
"""


def test_a_build_killed_midway_is_cleaned_up_by_the_next_builder(cais, tmp_root):
    import signal
    import subprocess
    import sys

    from cais.image.build.builder import Builder
    from cais.image.build.runner import Runner

    context_tar = os.path.join(tmp_root, "ctx.tar")  # a tar context: unpacked under the builder's tmp/
    with tarfile.open(context_tar, "w") as tar:
        data = b"FROM busybox\nRUN echo started; sleep 60\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_BUILD, cais.top, context_tar], stdout=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"StepOutput"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert leftovers(cais.top) != []  # the dead build's mount, container and writable layer
    Builder(cais.store, Runner(os.path.join(cais.top, "runtime")), cais.builder.root)
    assert leftovers(cais.top) == []
    assert os.listdir(os.path.join(cais.builder.root, "active")) == []
    assert os.listdir(cais.builder.tmp_dir) == []


def test_symlinks_in_the_image_never_lead_to_the_host(cais, tmp_root):
    marker = f"cais-build-escape-{os.getpid()}"
    ctx = write(os.path.join(tmp_root, "ctx"), {"f": "data\n", "Dockerfile": f"""\
FROM busybox
RUN ln -s / /escape && ln -s /etc /etcl && ln -s ../../../../tmp /rel
COPY f /escape/tmp/{marker}-c
COPY f /etcl/
COPY f /rel/{marker}-d
"""})
    cais.build(ctx, tags=["contained"])
    files = rootfs_files(cais, "contained")
    assert files[f"tmp/{marker}-c"] == b"data\n" and files["etc/f"] == b"data\n" and files[f"tmp/{marker}-d"] == b"data\n"
    assert not [n for n in os.listdir("/tmp") if n.startswith(marker)]
    assert not os.path.exists("/etc/f")


@pytest.mark.parametrize("entries, message", [
    ([("../../tmp/cais-build-evil", b"x")], "is outside of /unpacked/"),
    ([("up", "/"), ("up/tmp/cais-build-evil", b"x")], "is outside of /unpacked/ (through a symlink)"),
])
def test_hostile_archives_are_refused(shared_cais, tmp_root, entries, message):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": "FROM busybox\nADD evil.tar /unpacked/\n"})
    with open(os.path.join(ctx, "evil.tar"), "wb") as f:
        f.write(archive.getvalue())
    with pytest.raises(BuildError, match=re.escape(message)):
        shared_cais.build(ctx)
    assert not os.path.exists("/tmp/cais-build-evil")
    assert leftovers(shared_cais.top) == []


def test_proxy_args_reach_run_without_being_declared_or_kept(cais, tmp_root):
    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": "FROM busybox\nRUN echo \"$HTTP_PROXY|$no_proxy\" > /p\n"})
    image_id = cais.build(ctx, tags=["proxy"], build_args={"HTTP_PROXY": "http://proxy:3128", "no_proxy": "local"})
    assert rootfs_files(cais, "proxy")["p"] == b"http://proxy:3128|local\n"
    inspect = cais.store.inspect(image_id)
    assert not any("proxy" in e.lower() for e in inspect["Config"]["Env"])
    assert "proxy:3128" not in json.dumps(cais.store.history(image_id))
    assert not any("were not consumed" in str(e) for e in cais.events)


def test_unreadable_and_special_context_files_are_clear_errors(shared_cais, tmp_root):
    import socket

    ctx = write(os.path.join(tmp_root, "ctx"), {"Dockerfile": "FROM busybox\nCOPY . /x/\n", "f": "1"})
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.path.join(ctx, "sock"))
        with pytest.raises(BuildError, match=r"Dockerfile:2: COPY failed: .*sock: cannot copy special file"):
            shared_cais.build(ctx)
    assert leftovers(shared_cais.top) == []
