"""`cais cp` both ways over the archive endpoints, docker's path rules.

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


def copy(ctx, source: str, dest: str) -> int:  # type: ignore[no-untyped-def]
    src_container, src_path = _split(source)
    dst_container, dst_path = _split(dest)
    if (src_container is None) == (dst_container is None):
        raise CliError("must specify at least one container source" if src_container is None
                       else "copying between containers is not supported")
    if src_container is not None:
        return _from_container(ctx, src_container, src_path, dst_path)
    return _to_container(ctx, src_path, dst_container, dst_path)  # type: ignore[arg-type]


def _from_container(ctx, container: str, path: str, dest: str) -> int:  # type: ignore[no-untyped-def]
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
    rename_to = None if into_dir else os.path.basename(dest)
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


def _to_container(ctx, source: str, container: str, path: str) -> int:  # type: ignore[no-untyped-def]
    if source != "-" and not os.path.lexists(source):
        raise CliError(f'lstat {os.path.abspath(source)}: no such file or directory')
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
                tar.add(source, arcname=name)
            spool.seek(0)
            body = spool.read()
    try:
        ctx.client.call("PUT", f"/containers/{container}/archive", {"path": extract_to}, io.BytesIO(body).read(),
                        headers={"Content-Type": "application/x-tar"})
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    return 0
