"""`cais cp` both ways over the archive endpoints, docker's path rules.

`-a` asks the daemon to give what is copied in the container user's ownership (copyUIDGID);
without it the archive's owners stay, as with docker. `-L` follows a symlink named as the
source (on the host, or in the container), copying what it leads to under the link's name.

Archives coming out of a container are untrusted: they are extracted with tarfile's `data`
filter (no absolute paths, no `..`, no links leaving the destination, no device nodes).
"""

from __future__ import annotations

import base64
import io
import os
import sys
import tarfile
import tempfile

from cais import fastjson
from cais.cli.client import ApiError
from cais.cli.main import CliError


def _split(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith(("/", ".")):
        container, _, path = arg.partition(":")
        return container, path
    return None, arg


def _stat(ctx, container: str, path: str) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        response = ctx.client.request("HEAD", f"/containers/{container}/archive", {"path": path})
        response.read()
    except ApiError as e:
        if e.status == 404 and "No such container" not in str(e):
            return None
        raise CliError(f"Error response from daemon: {e}") from None
    header = response.getheader("X-Docker-Container-Path-Stat")
    return fastjson.loads(base64.b64decode(header)) if header else None


def copy(ctx, source: str, dest: str, *, archive: bool = False, follow: bool = False) -> int:  # type: ignore[no-untyped-def]
    src_container, src_path = _split(source)
    dst_container, dst_path = _split(dest)
    if (src_container is None) == (dst_container is None):
        raise CliError("must specify at least one container source" if src_container is None
                       else "copying between containers is not supported")
    if src_container is not None:
        return _from_container(ctx, src_container, src_path, dst_path, follow)
    return _to_container(ctx, src_path, dst_container, dst_path, archive, follow)  # type: ignore[arg-type]


def _rebase(path: str, target: str) -> tuple[str, str | None]:
    """docker's GetRebaseName: the resolved `target` keeps `path`'s trailing `/` or `/.`; the name
    the copy is to have if the link's name differs from its target's."""
    if (path.endswith("/.") or path == ".") and not target.endswith("/."):
        target += "/."
    if path.endswith("/") and not target.endswith("/"):
        target += "/"
    name = os.path.basename(path.rstrip("/").removesuffix("/.") or "/")
    return target, (name if name != os.path.basename(target.rstrip("/").removesuffix("/.") or "/") else None)


def _from_container(ctx, container: str, path: str, dest: str, follow: bool) -> int:  # type: ignore[no-untyped-def]
    rebase = None
    if follow:
        info = _stat(ctx, container, path)
        if info is not None and info["mode"] & (1 << 27) and info.get("linkTarget"):
            path, rebase = _rebase(path, info["linkTarget"])
    try:
        response = ctx.client.request("GET", f"/containers/{container}/archive", {"path": path})
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    if dest == "-":
        while chunk := response.read(1 << 16):
            sys.stdout.buffer.write(chunk)
        return 0
    into_dir = os.path.isdir(dest)
    if not into_dir and dest.endswith("/"):
        raise CliError(f"destination directory {dest!r} must exist")
    target_dir = dest if into_dir else (os.path.dirname(os.path.abspath(dest)))
    if not os.path.isdir(target_dir):
        raise CliError(f"no such directory: {target_dir}")
    rename_to = rebase if into_dir else os.path.basename(dest)
    with tarfile.open(fileobj=response, mode="r|") as tar:
        for member in tar:
            if rename_to is not None:
                first, _, rest = member.name.partition("/")
                member.name = rename_to + ("/" + rest if rest else "")
            try:
                tar.extract(member, target_dir, filter="data")
            except (tarfile.FilterError, OSError) as e:
                raise CliError(f"cannot extract {member.name!r}: {e}") from None
    return 0


def _to_container(ctx, source: str, container: str, path: str, archive: bool,  # type: ignore[no-untyped-def]
                  follow: bool) -> int:
    if source != "-" and not os.path.lexists(source):
        raise CliError(f'lstat {os.path.abspath(source)}: no such file or directory')
    if source != "-" and follow and not os.path.exists(source):
        raise CliError(f"stat {os.path.abspath(source)}: no such file or directory")  # a dangling link
    info = _stat(ctx, container, path)
    if info is not None and info["mode"] & (1 << 27) and info.get("linkTarget"):
        path = info["linkTarget"]  # a symlink: copy to where it leads (resolved in the container), as docker
        info = _stat(ctx, container, path)
    if info is not None and info["mode"] & (1 << 31):  # an existing directory: copy into it
        extract_to, name = path, os.path.basename(os.path.normpath(source))
    else:
        if path.endswith("/"):
            raise CliError(f"Error response from daemon: Could not find the file {path} in container {container}")
        extract_to, name = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path.rstrip("/"))
    if source == "-":
        body = sys.stdin.buffer.read()
        extract_to = path
    else:
        with tempfile.TemporaryFile(prefix="cais-cp-") as spool:
            with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                # -L: what the link leads to, under the link's name (links inside stay links)
                tar.add(os.path.realpath(source) if follow else source, arcname=name)
            spool.seek(0)
            body = spool.read()
    try:
        params = {"path": extract_to, **({"copyUIDGID": "true"} if archive else {})}
        ctx.client.call("PUT", f"/containers/{container}/archive", params, io.BytesIO(body).read(),
                        headers={"Content-Type": "application/x-tar"})
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    return 0
