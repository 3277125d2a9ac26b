"""Entry points for the CLI and the API: one call runs a whole build, with options given the
way `cais build` / `docker build` take them or the way docker's `POST /build` encodes them.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

from cais.image.build.context import BuildContext, ContextError
from cais.image.build.events import (
    BuildDone,
    BuildFailed,
    Event,
    PlainRenderer,
    TtyRenderer,
    docker_done_messages,
    docker_message,
)
from cais.image.build.options import BuildError, BuildOptions


class RequestError(ValueError):
    """A malformed build option; the message is for the user."""


@dataclass
class BuildRequest:
    options: BuildOptions
    context: str  # a directory, a tarball, or "-"
    dockerfile: str | None = None
    iidfile: str | None = None
    quiet: bool = False
    progress: str = "auto"  # auto | plain | tty


def build_image(store: Any, root: str, request: BuildRequest, emit: Any, *, stdin: BinaryIO | None = None,
                runtime: str | None = None, id_shift: Any = None) -> str:
    """Run a build with the builder under `root` (its cache, temporary files and runtime state);
    `id_shift` (the daemon's userns-remap, a cais.storage.idshift.IdShift): RUN runs remapped.

    Emits events (a BuildFailed last on failure) and returns the image ID, or raises BuildError."""
    from cais.image.build.builder import Builder
    from cais.image.build.runner import Runner

    builder = Builder(store, Runner(os.path.join(root, "runtime"), runtime), root, registry_puller(store),
                      id_shift=id_shift)
    try:
        with BuildContext.open(request.context, request.dockerfile, stdin=stdin, tmp_dir=builder.tmp_dir) as ctx:
            image_id = builder.build(ctx, request.options, emit)
    except ContextError as e:
        emit(BuildFailed(str(e)))
        raise BuildError(str(e)) from None
    except BuildError as e:
        emit(BuildFailed(str(e)))
        raise
    if request.iidfile:
        with open(request.iidfile, "w") as f:
            f.write(image_id)
    return image_id


def registry_puller(store: Any) -> Any:
    """Pull missing base images from their registry (cais.registry), as docker build does."""
    def pull(name: str, log: Any) -> None:
        import asyncio

        from cais.image.reference import parse
        from cais.registry.pull import pull as registry_pull

        ref = parse(name)
        log(f"Pulling {ref.familiar()}")

        def progress(event: Any) -> None:
            if not event.is_transfer:
                log(f"{event.id}: {event.status}" if event.id else event.status)

        with store.hold():
            result = asyncio.run(registry_pull(ref, store.content, progress=progress))
            store.register(result.digest, ref)
    return pull


def run_cli(store: Any, root: str, request: BuildRequest, *, stdin: BinaryIO | None = None,
            stdout: TextIO | None = None, stderr: TextIO | None = None, runtime: str | None = None) -> int:
    """`cais build` without a daemon: build in-process, show progress, return the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    tty = request.progress == "tty" or (request.progress == "auto" and stderr.isatty())
    render = PlainRenderer(stdout, quiet=request.quiet) if request.quiet or not tty else TtyRenderer(stderr)
    try:
        build_image(store, root, request, render, stdin=stdin, runtime=runtime)
    except BuildError as e:
        print(f"ERROR: {e}", file=stderr)
        return 1
    except Exception as e:  # a bug or a failing machine: still one line, not a traceback
        print(f"ERROR: {type(e).__name__}: {e}", file=stderr)
        return 1
    return 0


def context_tar(context: str, dockerfile: str | None, stdin: BinaryIO | None = None) -> tuple[bytes, str | None]:
    """What the client sends to POST /build, as docker's CLI does: the context directory as a tar
    without what .dockerignore excludes (the Dockerfile and .dockerignore always go), and the
    Dockerfile's name in it (one outside the context is added under a generated name)."""
    import io
    import secrets
    import tarfile

    ctx = BuildContext.open(context, dockerfile, stdin=stdin)
    buf = io.BytesIO()
    name = None
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(rel: str) -> None:
            info = tar.gettarinfo(ctx.path(rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(ctx.path(rel), "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)

        sent = set()
        for rel, _st in ctx.walk(""):
            add(rel)
            sent.add(rel)
        if dockerfile is not None:
            inside = os.path.relpath(os.path.realpath(dockerfile), ctx.root) if dockerfile != "-" else ".."
            if inside.startswith("..") or os.path.isabs(inside):
                name = f".dockerfile.{secrets.token_hex(10)}"
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(ctx.dockerfile), 0o644
                tar.addfile(info, io.BytesIO(ctx.dockerfile))
            else:
                name = inside
        for rel in (name or "Dockerfile", ".dockerignore"):
            if rel not in sent and os.path.isfile(ctx.path(rel)):
                add(rel)
    return buf.getvalue(), name


def _key_values(items: Sequence[str], what: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, has_value, value = item.partition("=")
        if not key:
            raise RequestError(f"invalid {what} {item!r}: the name is empty")
        if not has_value:
            if environ is None:
                value = ""
            elif key in environ:
                value = environ[key]
            else:
                continue  # docker: `--build-arg NAME` with NAME unset passes nothing
        out[key] = value
    return out


def cli_request(context: str, *, tags: Sequence[str] = (), file: str | None = None, build_args: Sequence[str] = (),
                labels: Sequence[str] = (), target: str | None = None, no_cache: bool = False,
                cache_from: Sequence[str] = (), network: str = "default", iidfile: str | None = None,
                quiet: bool = False, progress: str = "auto", pull: bool = False,
                environ: Mapping[str, str] | None = None) -> BuildRequest:
    """The request of `cais build [OPTIONS] PATH | URL | -`, from the flags the CLI parsed."""
    environ = os.environ if environ is None else environ
    dockerfile = file
    if dockerfile and dockerfile != "-" and context != "-" and os.path.isdir(context):
        dockerfile = os.path.abspath(dockerfile)  # -f is relative to the current directory, as docker's
    epoch = environ.get("SOURCE_DATE_EPOCH")
    options = BuildOptions(tags=list(tags), build_args=_key_values(build_args, "--build-arg", environ),
                           target=target, no_cache=no_cache, cache_from=list(cache_from),
                           labels=_key_values(labels, "--label"), network=network,
                           source_date_epoch=_epoch(epoch), pull=pull)
    return BuildRequest(options, context, dockerfile, iidfile, quiet, progress)


def _epoch(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {value!r}") from None


def _json(query: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    if isinstance(raw, kind):  # already decoded by the caller
        return raw
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError(f"invalid {name} parameter: not JSON") from None
    if value is None:
        return default
    if not isinstance(value, kind):
        raise RequestError(f"invalid {name} parameter: expected a JSON {kind.__name__}")
    return value


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _tags(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def api_build(store: Any, root: str, body: BinaryIO, query: Mapping[str, Any], *,
              id_shift: Any = None) -> Iterator[dict[str, Any]]:
    """docker's `POST /build`: the body is the context (a tar), the query the options; yields the
    JSON messages docker streams. Closing the generator (the client went away) cancels the build."""
    try:
        request = parse_query(query)
    except RequestError as e:
        yield {"errorDetail": {"message": str(e)}, "error": str(e)}
        return
    messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancelled = threading.Event()

    def emit(event: Event) -> None:
        if cancelled.is_set():
            raise BuildError("build cancelled: the client went away")
        if request.quiet and not isinstance(event, (BuildDone, BuildFailed)):
            return
        message = docker_message(event)
        if message is not None:
            messages.put(message)
        if isinstance(event, BuildDone):
            for line in docker_done_messages(event) if not request.quiet else [{"stream": event.image_id + "\n"}]:
                messages.put(line)

    def work() -> None:
        try:
            build_image(store, root, request, emit, stdin=body, id_shift=id_shift)
        except BuildError:
            pass  # already sent as a BuildFailed message
        except Exception as e:  # a bug or an I/O error: still one clean error message for the client
            messages.put({"errorDetail": {"message": str(e)}, "error": str(e)})
        finally:
            messages.put(None)

    worker = threading.Thread(target=work, name="cais-build", daemon=True)
    worker.start()
    try:
        while (message := messages.get()) is not None:
            yield message
    finally:
        cancelled.set()
        worker.join()


def parse_query(query: Mapping[str, Any], tags: Sequence[str] = ()) -> BuildRequest:
    """docker's `POST /build` query (`t` may repeat: pass all values as `tags`); the body is the context."""
    if query.get("remote"):
        raise RequestError("remote build contexts are not supported: send the context in the request body")
    build_args = _json(query, "buildargs", dict, {})
    labels = _json(query, "labels", dict, {})
    cache_from = _json(query, "cachefrom", list, [])
    for what, mapping in (("buildargs", build_args), ("labels", labels)):
        if not all(isinstance(v, str) or v is None for v in mapping.values()):
            raise RequestError(f"invalid {what} parameter: values must be strings")
    network = query.get("networkmode") or "default"
    if network == "bridge":
        network = "default"
    options = BuildOptions(
        tags=list(tags) or _tags(query.get("t")),
        build_args={k: v for k, v in build_args.items() if v is not None},
        target=query.get("target") or None, no_cache=_truthy(query.get("nocache", "")),
        cache_from=[str(c) for c in cache_from], labels={k: v for k, v in labels.items() if v is not None},
        network=network, pull=_truthy(query.get("pull", "")))
    return BuildRequest(options, "-", query.get("dockerfile") or None, quiet=_truthy(query.get("q", "")))


__all__ = ["BuildError", "BuildRequest", "Event", "RequestError", "api_build", "build_image", "cli_request", "parse_query",
           "run_cli"]
