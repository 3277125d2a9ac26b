"""/containers/…: create, list, inspect, lifecycle, logs, attach, top, stats, changes, export, archive."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading

from aiohttp import web

from cais.api import schema
from cais.api.errors import BadRequest, json_reply, read_json
from cais.api.hijack import hijack
from cais.api.routing import qbool, qfilters, qint, qstr, route
from cais.api.streams import bridge, client_gone, iterate_in_thread, parse_detach_keys
from cais.engine import frames
from cais.engine.errors import EngineError
from cais.engine.logs import parse_timestamp_ns, readable


def _engine(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app["engine"]


def _no_content() -> web.Response:
    return web.Response(status=204)


@route("POST", "/containers/create")
async def create(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request, required=True), schema.CONTAINER_CREATE)
    name = qstr(request, "name") or None
    result = await asyncio.to_thread(_engine(request).create, body, name)
    return json_reply(result, status=201)


@route("GET", "/containers/json")
async def list_containers(request: web.Request) -> web.Response:
    engine = _engine(request)
    result = await asyncio.to_thread(engine.list, all=qbool(request, "all"), filters=qfilters(request),
                                     limit=qint(request, "limit"))
    return json_reply(result)


@route("GET", "/containers/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    result = _engine(request).inspect(request.match_info["id"])
    if qbool(request, "size"):
        size = await asyncio.to_thread(_engine(request).storage.size, result["Id"])
        after = list(result)[list(result).index("GraphDriver") + 1:] if "GraphDriver" in result else []
        result.update(SizeRw=size, SizeRootFs=size)  # after GraphDriver, as dockerd orders them
        result.update({k: result.pop(k) for k in after})
    return json_reply(result)


@route("POST", "/containers/{id}/start")
async def start(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).start, request.match_info["id"])
    return _no_content()


def _timeout(request: web.Request) -> int | None:
    return qint(request, "t", qint(request, "timeout"))


@route("POST", "/containers/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).stop, request.match_info["id"], _timeout(request), qstr(request, "signal"))
    return _no_content()


@route("POST", "/containers/{id}/restart")
async def restart(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).restart, request.match_info["id"], _timeout(request),
                            qstr(request, "signal"))
    return _no_content()


@route("POST", "/containers/{id}/kill")
async def kill(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).kill, request.match_info["id"], qstr(request, "signal"))
    return _no_content()


@route("POST", "/containers/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).pause, request.match_info["id"])
    return _no_content()


@route("POST", "/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).unpause, request.match_info["id"])
    return _no_content()


@route("POST", "/containers/{id}/rename")
async def rename(request: web.Request) -> web.Response:
    name = qstr(request, "name")
    if not name:
        raise BadRequest("name is required")
    await asyncio.to_thread(_engine(request).rename, request.match_info["id"], name)
    return _no_content()


@route("POST", "/containers/{id}/update")
async def update(request: web.Request) -> web.Response:
    body = schema.check(await read_json(request), schema.CONTAINER_UPDATE)
    return json_reply(await asyncio.to_thread(_engine(request).update, request.match_info["id"], body))


@route("POST", "/containers/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0), qint(request, "w", 0)
    await asyncio.to_thread(_engine(request).resize, request.match_info["id"], h or 0, w or 0)
    return web.Response(status=200)


@route("DELETE", "/containers/{id}")
async def remove(request: web.Request) -> web.Response:
    await asyncio.to_thread(_engine(request).remove, request.match_info["id"], force=qbool(request, "force"),
                            volumes=qbool(request, "v"))
    return _no_content()


@route("POST", "/containers/prune")
async def prune(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_engine(request).prune, qfilters(request)))


@route("POST", "/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    condition = qstr(request, "condition") or "not-running"
    cid, token = engine.wait_token(request.match_info["id"], condition)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)  # headers now: the docker CLI starts the container once it has them
    # no worker thread blocks for a wait (many waiting clients would starve the other requests):
    # each exit or removal wakes it to check; once a second too, for changes that notify nobody
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake(removal: bool) -> None:
        if condition == "removed" and not removal:  # an exit: `run --rm`'s wait has nothing to check yet
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(changed.set)
    engine.listeners.add(wake)
    try:
        while not client_gone(request):
            changed.clear()
            checked, result = engine.wait_now(cid, token, condition)
            if not checked:
                result = await asyncio.to_thread(engine.wait, cid, token, condition, 0)
            if result is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await response.write(json.dumps(result).encode() + b"\n")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)
    finally:
        engine.listeners.discard(wake)
    return response


@route("GET", "/containers/{id}/top")
async def top(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_engine(request).top, request.match_info["id"],
                                                     qstr(request, "ps_args")))


@route("GET", "/containers/{id}/changes")
async def changes(request: web.Request) -> web.Response:
    return json_reply(await asyncio.to_thread(_engine(request).changes, request.match_info["id"]) or None)


@route("GET", "/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    ref = request.match_info["id"]
    record = engine.get(ref)
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if not stream:
        sample = await asyncio.to_thread(engine.stats, ref)
        if not one_shot and record["State"]["Running"]:
            await asyncio.sleep(1)
            sample = await asyncio.to_thread(engine.stats, ref, sample)
        return json_reply(sample)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    previous = None
    try:
        while not client_gone(request):
            try:
                sample = await asyncio.to_thread(engine.stats, ref, previous)
            except EngineError:
                break
            await response.write(json.dumps(sample).encode() + b"\n")
            previous = sample
            await asyncio.sleep(1)
    except (ConnectionError, RuntimeError):
        pass
    return response


@route("GET", "/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    record = engine.get(request.match_info["id"])
    stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
    if not (stdout or stderr):
        raise BadRequest("Bad parameters: you must choose at least one stream")
    tail_text = (qstr(request, "tail") or "all").strip()
    tail = int(tail_text) if tail_text.isdigit() else None  # as dockerd: "all", negative or garbage is all
    since = parse_timestamp_ns(qstr(request, "since")) if qstr(request, "since") not in (None, "", "0") else None
    until = parse_timestamp_ns(qstr(request, "until")) if qstr(request, "until") not in (None, "", "0") else None
    timestamps = qbool(request, "timestamps")
    tty = record["Config"]["Tty"]
    batches = engine.logs(record["Id"], follow=qbool(request, "follow"), stdout=stdout, stderr=stderr, since=since,
                          until=until, tail=tail, details=qbool(request, "details"), batches=True)
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty else
                                           "application/vnd.docker.multiplexed-stream"})
    await response.prepare(request)
    stop = threading.Event()
    try:  # framed in the reading thread, a batch of entries at a time: one write each, no per-line await
        async for chunk in iterate_in_thread(lambda: frames.encode_logs(batches, tty=tty, timestamps=timestamps),
                                             stop, queued=4):  # chunks of up to ~1 MiB: a slow client holds little
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        stop.set()
    return response


async def _attach_stream(request: web.Request, *, ws: bool = False) -> web.StreamResponse:
    engine = _engine(request)
    ref = request.match_info["id"]
    record = engine.get(ref)
    want_stdin = qbool(request, "stdin")
    want_stdout, want_stderr = qbool(request, "stdout"), qbool(request, "stderr")
    try:
        detach_keys = parse_detach_keys(qstr(request, "detachKeys"))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if not qbool(request, "stream") and not qbool(request, "logs"):
        raise BadRequest("Bad parameters: you must choose at least one stream")
    tty = record["Config"]["Tty"]
    sock = None
    if qbool(request, "stream"):
        record, sock = await asyncio.to_thread(engine.attach, ref, stdin=want_stdin and record["Config"]["OpenStdin"],
                                               stdout=want_stdout, stderr=want_stderr)
    h = await hijack(request, tty=tty)
    if qbool(request, "logs") and readable(record):
        batches = engine.logs(record["Id"], stdout=want_stdout, stderr=want_stderr, batches=True)
        async for chunk in iterate_in_thread(lambda: frames.encode_logs(batches, tty=tty, timestamps=False),
                                             queued=4):
            await h.write(chunk)
    if sock is not None:
        await bridge(h, sock, tty=tty, close_stdin_at_eof=record["Config"]["StdinOnce"],
                     detach_keys=detach_keys if want_stdin else None)
    return h.response


@route("POST", "/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    return await _attach_stream(request)


@route("GET", "/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    engine = _engine(request)
    chunks = await asyncio.to_thread(engine.export, request.match_info["id"])
    return await _send_tar(request, chunks)


async def _send_tar(request: web.Request, chunks, headers: dict | None = None) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar", **(headers or {})})
    await response.prepare(request)
    stop = threading.Event()
    try:
        async for chunk in iterate_in_thread(lambda: chunks, stop):
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        stop.set()
    return response


def _archive_path(request: web.Request) -> str:
    path = qstr(request, "path")
    if not path:
        raise BadRequest("path is required")
    return path


@route("HEAD", "/containers/{id}/archive")
async def archive_head(request: web.Request) -> web.Response:
    from cais.engine.archive import ContainerFS, stat_header
    engine = _engine(request)
    record = engine.get(request.match_info["id"])
    path = _archive_path(request)

    def run() -> str:
        with ContainerFS(engine, record) as root:
            return stat_header(root, path, request.match_info["id"])
    header = await asyncio.to_thread(run)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": header,
                                             "Content-Type": "application/json"})


@route("GET", "/containers/{id}/archive")
async def archive_get(request: web.Request) -> web.StreamResponse:
    from cais.engine.archive import ContainerFS, get_archive, stat_header
    engine = _engine(request)
    record = engine.get(request.match_info["id"])
    path = _archive_path(request)
    fs = ContainerFS(engine, record)
    root = await asyncio.to_thread(fs.__enter__)
    try:
        name = request.match_info["id"]
        header = await asyncio.to_thread(stat_header, root, path, name)
        chunks = get_archive(root, path, name, engine.storage.remap(record["Id"]))
        return await _send_tar(request, chunks, {"X-Docker-Container-Path-Stat": header})
    finally:
        await asyncio.to_thread(fs.__exit__)


class _BodyReader(io.RawIOBase):
    """The request body as a raw file for a thread (tarfile reads it while the loop receives it)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.request = request
        self.loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = asyncio.run_coroutine_threadsafe(self.request.content.read(len(buffer)), self.loop).result()
        buffer[: len(data)] = data
        return len(data)


@route("PUT", "/containers/{id}/archive")
async def archive_put(request: web.Request) -> web.Response:
    from cais.engine.archive import ContainerFS, check_writable, copy_owner, put_archive
    engine = _engine(request)
    record = engine.get(request.match_info["id"])
    path = _archive_path(request)
    check_writable(record, path)
    body = _BodyReader(request, asyncio.get_running_loop())
    no_overwrite = qbool(request, "noOverwriteDirNonDir")
    copy_uid_gid = qbool(request, "copyUIDGID")

    def run() -> None:
        with ContainerFS(engine, record) as root:
            put_archive(root, path, request.match_info["id"], body, no_overwrite_dir_non_dir=no_overwrite,
                        remap=engine.storage.remap(record["Id"]),
                        chown=copy_owner(root, record) if copy_uid_gid else None)
    await asyncio.to_thread(run)
    engine._event(record, "extract-to-dir")
    return web.Response(status=200)


