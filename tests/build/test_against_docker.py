"""A corpus of Dockerfiles built by dockerd (its classic builder) and by cais, from the same busybox
image: the image configs and the exported root filesystems must match."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator

import pytest

from cais.image.rootfs import export_image
from tests.build.daemon import caisd
from tests.peers import Dockerd, dockerd

pytestmark = pytest.mark.peers

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
                 "Healthcheck", "StopSignal", "OnBuild", "Shell")
# What docker's container init layer adds to an exported container.
DOCKER_INIT = {".dockerenv", "etc/hosts", "etc/resolv.conf", "etc/mtab", "etc/hostname", "dev/console",
               "dev/pts", "dev/shm"}

CORPUS: dict[str, dict[str, str | bytes]] = {
    "every-instruction": {
        "Dockerfile": """\
FROM busybox
LABEL a=1 "b c"="d e" \\
      multi="line one \\
line two"
MAINTAINER someone@example.com
ENV A=1 B="two words"
ENV C $A-$B
ARG X=def
ENV FROMARG=$X ESCAPED=\\$A
EXPOSE 80 443/udp 8000-8002
VOLUME ["/data", "/var/log"]
VOLUME /other
WORKDIR /w
WORKDIR sub
RUN echo "$A $B $C $X" > in-workdir.txt
USER nobody
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD echo ok
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD hi there
ONBUILD RUN echo onbuild
""",
    },
    "shell-form-and-entrypoint-reset": {
        "Dockerfile": """\
FROM busybox
CMD ["from", "base"]
ENTRYPOINT echo entry
""",
    },
    "run-user-groups": {  # USER for RUN: the image's passwd and group files, groups as dockerd's
        "Dockerfile": """\
FROM busybox
RUN echo "caiseg:x:4321:4322::/home/caiseg:/bin/sh" >> /etc/passwd && echo "caiseg-g:x:4322:" >> /etc/group \
    && echo "caiseg-s:x:4400:caiseg" >> /etc/group && echo "caiseg-t:x:4401:root,caiseg" >> /etc/group
RUN (id; grep -E 'Uid|Gid|Groups' /proc/self/status) > /out-root
USER caiseg
RUN (id; grep -E 'Uid|Gid|Groups' /proc/self/status; echo "HOME=$HOME") > /tmp/out-user
USER caiseg:caiseg-s
RUN (id; grep Groups /proc/self/status) > /tmp/out-group
USER 4321
RUN (id; grep Groups /proc/self/status) > /tmp/out-uid
""",
    },
    "copy-semantics": {
        "Dockerfile": """\
FROM busybox
COPY a.txt /dest/
COPY a.txt /renamed.txt
COPY dir /copied-dir
COPY dir/ /copied-dir2/
COPY *.txt /glob/
COPY --chown=1:2 a.txt /owned/
COPY --chown=nobody:nogroup dir /owned-dir
COPY exec.sh /usr/local/bin/
COPY dir/sub /deep/er/
WORKDIR /wd
COPY a.txt rel/
COPY a.txt .
COPY ["b.txt", "/json form/"]
ADD archive.tar /unpacked/
ADD a.txt /added
RUN mkdir -p /existing && echo old > /existing/a.txt
COPY a.txt /existing/
COPY b.txt /existing
COPY dir /existing/
COPY dir exec.sh /merged/
COPY dir/link /followed-link
COPY empty-dir /made/empty/
""",
        "a.txt": "alpha\n",
        "b.txt": "bravo\n",
        "exec.sh": "#!/bin/sh\necho hi\n",
        "dir/one": "1\n",
        "dir/sub/two": "2\n",
        "dir/link": "->one",
        "dir/.hidden": "h\n",
        "archive.tar": b"TAR",
        "empty-dir/": "",
    },
    "copy-through-image-symlinks": {
        "Dockerfile": """\
FROM busybox
RUN mkdir -p /real/sub /deep/a/b && ln -s /real /abs && ln -s ../../../../../real /rel && ln -s ../real /deep/up \\
 && ln -s /nowhere/x /dangling && ln -s sub /real/subl && ln -s / /escape && echo old > /real/old \\
 && ln -s old /real/oldlink
COPY a.txt /abs/
COPY a.txt /rel/via-rel.txt
COPY a.txt /deep/up/sub/
COPY dir /abs/subl/
COPY a.txt /escape/tmp/
ADD archive.tar /rel/
COPY a.txt /abs
COPY b.txt /real/oldlink
COPY a.txt /dangling
COPY dir /deep/a/../up/dir-through-dotdot/
""",
        "a.txt": "alpha\n",
        "b.txt": "bravo\n",
        "dir/one": "1\n",
        "dir/link": "->one",
        "archive.tar": b"TAR",
    },
    "dockerignore": {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        ".dockerignore": "# comment\n*.md\n!README.md\nsecret/\n!secret/public/*.pem\n**/*.tmp\n/rootonly\n",
        "README.md": "r\n", "NOTES.md": "n\n", "secret/key": "k\n", "keep/x.tmp": "t\n", "keep/x.txt": "x\n",
        "secret/public/cert.pem": "c\n", "secret/public/other": "o\n",
        "rootonly": "r\n", "keep/rootonly": "kept\n", "a.tmp": "t\n",
    },
    "multi-stage": {
        "Dockerfile": """\
FROM busybox AS builder
RUN mkdir -p /out/sub && echo built > /out/artifact && chmod 600 /out/artifact && ln -s artifact /out/link \\
 && echo deep > /out/sub/deep
FROM busybox AS other
ENV STAGE=other
RUN echo other > /other
FROM builder AS derived
RUN echo derived >> /out/artifact
FROM busybox
COPY --from=builder /out/artifact /app/
COPY --from=0 /out /app/outdir
COPY --from=derived /out/artifact /app/derived
COPY --from=builder --chown=nobody:nogroup /out/sub /app/owned/
COPY --from=busybox /etc/passwd /from-image/
ENV STAGE=final
""",
    },
    "misc": {
        "Dockerfile": """\
FROM busybox
ENV PATH=/opt/bin:$PATH
RUN mkdir -p /opt/bin && printf '#!/bin/sh\\necho tool\\n' > /opt/bin/tool && chmod +x /opt/bin/tool && tool > /tool-out
USER nobody
WORKDIR /home/nobody-work
RUN id -u > /tmp/uid && pwd > /tmp/pwd
USER root
ADD archive.tar.gz /gz/
COPY hard1 hard2 /hl/
COPY --chown=1:1 a.txt /home/nobody-work/
""",
        "archive.tar.gz": b"TARGZ", "hard1": "same inode\n", "hard2": "=>hard1", "a.txt": "a\n",
    },
    "arg-env-scoping": {
        "Dockerfile": """\
ARG BASE=busybox
ARG GLOBAL=g
ARG UNDECLARED_IN_STAGE=x
FROM ${BASE}
ARG GLOBAL
ARG LOCAL=l
ARG FROMCLI=default
ENV FROM_GLOBAL=$GLOBAL FROM_LOCAL=${LOCAL} DEFAULTED=${UNSET:-dflt} ALT=${LOCAL:+alt} NOT=${UNDECLARED_IN_STAGE}
RUN echo "$LOCAL $GLOBAL $FROMCLI" > /args.txt
ENV LOCAL=env-wins
RUN echo "$LOCAL" > /env-wins.txt
ENV abc=hello
ENV abc=bye def=$abc
ENV ghi=$abc
""",
    },
    "deletions-and-modes": {
        "Dockerfile": """\
FROM busybox
RUN rm -rf /home /etc/group && mkdir -m 0700 /private && touch /private/f && chmod 4755 /private/f \\
 && mkdir -p /opaque/x && touch /opaque/x/y
RUN rm -rf /opaque && mkdir /opaque && echo new > /opaque/z && ln -s /nowhere /dangling && ln /private/f /hard
""",
    },
}
ONBUILD_PARENT = """\
FROM busybox
ONBUILD COPY a.txt /from-trigger.txt
ONBUILD RUN echo triggered > /triggered
ENV PARENT=1
"""
ONBUILD_CHILD = "FROM onbuild-parent\nENV CHILD=1\n"


def make_context(root: str, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content == "=>hard1":
            os.link(os.path.join(root, "hard1"), path)
        elif rel.endswith("/"):
            os.makedirs(path, mode=0o750, exist_ok=True)
            os.chmod(path, 0o750)
        elif content in (b"TAR", b"TARGZ"):
            with tarfile.open(path, "w:gz" if content == b"TARGZ" else "w") as tar:
                for name, data in (("t/in-archive.txt", b"from the archive\n"), ("top.txt", b"top\n")):
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.uid, info.gid = len(data), 0o640, 1000, 1000
                    tar.addfile(info, io.BytesIO(data))
        elif isinstance(content, str) and content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            with open(path, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
    if "exec.sh" in files:
        os.chmod(os.path.join(root, "exec.sh"), 0o755)


def tree(data: bytes, skip: set[str]) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, link target, content digest) of a root filesystem tarball."""
    out: dict[str, tuple] = {}
    contents: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            name = os.path.normpath(m.name).lstrip("/")
            if name in (".", "") or name in DOCKER_INIT or name in skip:
                continue
            digest = ""
            if m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
                contents[name] = digest
            elif m.islnk():
                digest = contents.get(os.path.normpath(m.linkname).lstrip("/"), "")
            kind = "f" if m.islnk() else m.type.decode()
            out[name] = (kind, oct(m.mode & 0o7777), m.uid, m.gid, m.linkname if m.issym() else "", digest)
    return out


def normalized_config(config: dict) -> dict:
    return {k: config.get(k) or None for k in CONFIG_FIELDS}


@pytest.fixture(scope="module")
def docker(busybox_archive: bytes) -> Iterator[Dockerd]:
    with dockerd() as d:
        d.docker("load", input=busybox_archive)
        yield d


def docker_build(d: Dockerd, context: str, tag: str, *args: str) -> None:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    proc = subprocess.run(["docker", "-H", d.host, "build", "-q", "-t", tag, *args, context],
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()


def docker_rootfs(d: Dockerd, tag: str) -> bytes:
    cid = d.docker("create", tag).stdout.decode().strip()
    try:
        return d.docker("export", cid).stdout
    finally:
        d.docker("rm", cid)


def cais_rootfs(cais, tag: str) -> bytes:
    out = io.BytesIO()
    export_image(cais.store, tag, out)
    return out.getvalue()


def compare(docker: Dockerd, cais, tag: str) -> None:
    theirs = json.loads(docker.docker("image", "inspect", tag).stdout)[0]["Config"]
    ours = cais.store.inspect(tag)["Config"]
    assert normalized_config(ours) == normalized_config(theirs)
    # `docker create` makes the volumes' mount points: not part of the image.
    volumes = {v.strip("/") for v in theirs.get("Volumes") or {}}
    their_tree, our_tree = tree(docker_rootfs(docker, tag), volumes), tree(cais_rootfs(cais, tag), volumes)
    missing = sorted(set(their_tree) - set(our_tree))
    extra = sorted(set(our_tree) - set(their_tree))
    different = {p: (our_tree[p], their_tree[p]) for p in sorted(set(our_tree) & set(their_tree))
                 if our_tree[p] != their_tree[p]}
    assert (missing, extra, different) == ([], [], {}), (missing, extra, different)


BUILD_ARGS = {"arg-env-scoping": ["FROMCLI=cli", "UNUSED=1"]}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_same_image_as_docker(docker, cais, tmp_root, name):
    context = os.path.join(tmp_root, name)
    make_context(context, CORPUS[name])
    build_args = BUILD_ARGS.get(name, [])
    docker_build(docker, context, f"corpus-{name}", *[a for arg in build_args for a in ("--build-arg", arg)])
    cais.build(context, tags=[f"corpus-{name}"], build_args=dict(a.split("=", 1) for a in build_args))
    compare(docker, cais, f"corpus-{name}")


def test_onbuild_triggers_like_docker(docker, cais, tmp_root):
    parent, child = os.path.join(tmp_root, "parent"), os.path.join(tmp_root, "child")
    make_context(parent, {"Dockerfile": ONBUILD_PARENT})
    make_context(child, {"Dockerfile": ONBUILD_CHILD, "a.txt": "for the trigger\n"})
    for ctx, tag in ((parent, "onbuild-parent"), (child, "onbuild-child")):
        docker_build(docker, ctx, tag)
        cais.build(ctx, tags=[tag])
    compare(docker, cais, "onbuild-parent")
    compare(docker, cais, "onbuild-child")


def test_docker_build_against_caisd(docker, busybox_archive, tmp_root):
    """The docker CLI builds the corpus through caisd's POST /build: same images as dockerd's."""
    with caisd(busybox_archive) as d:
        for name in sorted(CORPUS):
            context = os.path.join(tmp_root, name)
            make_context(context, CORPUS[name])
            build_args = [a for arg in BUILD_ARGS.get(name, []) for a in ("--build-arg", arg)]
            docker_build(docker, context, f"corpus-{name}", *build_args)
            docker_build(d, context, f"corpus-{name}", *build_args)
            theirs = json.loads(docker.docker("image", "inspect", f"corpus-{name}").stdout)[0]["Config"]
            ours = json.loads(d.docker("image", "inspect", f"corpus-{name}").stdout)[0]["Config"]
            assert normalized_config(ours) == normalized_config(theirs), name
            volumes = {v.strip("/") for v in theirs.get("Volumes") or {}}
            assert tree(docker_rootfs(d, f"corpus-{name}"), volumes) == \
                tree(docker_rootfs(docker, f"corpus-{name}"), volumes), name
        # cais's own CLI, with a Dockerfile outside the context, --iidfile and -q
        context = os.path.join(tmp_root, "cli")
        make_context(context, {".dockerignore": "ignored\n", "ignored": "x", "kept": "k\n"})
        dockerfile = os.path.join(tmp_root, "outside.Dockerfile")
        with open(dockerfile, "w") as f:
            f.write("FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n")
        iidfile = os.path.join(tmp_root, "iid")
        cais_cli = os.path.join(os.path.dirname(sys.executable), "cais")
        proc = subprocess.run([cais_cli, "-H", d.host, "build", "-q", "-t", "cli:1", "-f", dockerfile,
                               "--iidfile", iidfile, context], capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        with open(iidfile) as f:
            assert proc.stdout.decode().strip() == f.read() == \
                json.loads(d.docker("image", "inspect", "cli:1").stdout)[0]["Id"]
        listing = d.docker("run", "--rm", "cli:1", "cat", "/listing").stdout.split()
        assert listing == [b"kept"]  # .dockerignore applied, the outside Dockerfile not copied
        proc = subprocess.run(["docker", "-H", d.host, "build", "-"], input=b"FROM busybox\nBOGUS x\n",
                              capture_output=True, env=dict(os.environ, DOCKER_BUILDKIT="0"), timeout=60)
        assert proc.returncode != 0 and b"Dockerfile:2: unknown instruction: BOGUS" in proc.stderr
