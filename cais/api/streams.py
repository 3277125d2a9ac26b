"""Bridges between the engine's blocking iterators/sockets and aiohttp's streaming responses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from aiohttp import web

from cais.api.hijack import Hijacked
from cais.engine import frames

_END = object()


async def iterate_in_thread(factory: Callable[[], Iterator], stop: threading.Event | None = None) -> AsyncIterator:
    """Run a blocking iterator in a thread; yield its items here. `stop` ends it early."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=256)
    stop = stop or threading.Event()

    def run() -> None:
        try:
            for item in factory():
                if stop.is_set():
                    break
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except BaseException as e:  # re-raised on the event loop's side
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(queue.put(e), loop).result()
        finally:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(queue.put(_END), loop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():  # unblock the producer
            queue.get_nowait()


async def json_stream(request: web.Request, items: AsyncIterator[dict], *, status: int = 200) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        async for item in items:
            await response.write(json.dumps(item).encode() + b"\n")
    except (ConnectionError, RuntimeError):
        pass
    return response


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's --detach-keys: comma-separated `ctrl-<x>` or single characters."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            out.append(code if code is not None else (ord(c.lower()) - ord("a") + 1) & 0x1F)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"invalid detach keys: {spec!r}")
    return bytes(out)


def find_detach_keys(data: bytes, keys: bytes, matched: int) -> tuple[int, int | None]:
    """Scan stdin bytes for the detach sequence, `matched` of its bytes seen in earlier chunks.
    Returns (bytes of it matched now, None) or, once complete, (…, how many bytes of `data` to
    pass on before it)."""
    for i, b in enumerate(data):
        matched = matched + 1 if b == keys[matched] else (1 if b == keys[0] else 0)
        if matched == len(keys):
            return matched, max(0, i + 1 - len(keys))
    return matched, None


async def bridge(h: Hijacked, sock: socket.socket, *, tty: bool, close_stdin_at_eof: bool,
                 detach_keys: bytes | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
    """Copy supervisor frames to the client (re-framed or raw) and the client's stdin back."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)

    async def output() -> None:
        while (got := await frames.read_frame(reader)) is not None:
            stream, data = got
            if stream == frames.CONTROL:
                if on_exit is not None:
                    on_exit(int(json.loads(data)["exit_code"]))
                continue
            if not await h.write(data if tty else frames.frame(stream, data)):
                return

    async def stdin() -> None:
        if h.stdin is None:
            await asyncio.Event().wait()
        assert h.stdin is not None
        matched = 0
        while data := await h.stdin.read(65536):
            if detach_keys:
                matched, cut = find_detach_keys(data, detach_keys, matched)
                if cut is not None:
                    if cut:
                        writer.write(frames.frame(frames.STDIN, data[:cut]))
                    return  # detached: stdin stays open, the process keeps running
            writer.write(frames.frame(frames.STDIN, data))
            await writer.drain()
        if close_stdin_at_eof:
            writer.write(frames.frame(frames.STDIN, b""))
            await writer.drain()
        await asyncio.Event().wait()  # stdin is done; the output decides when we end

    out_task = asyncio.ensure_future(output())
    in_task = asyncio.ensure_future(stdin())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, in_task):
            task.cancel()
        with contextlib.suppress(Exception):
            writer.close()
        for task in (out_task, in_task):
            with contextlib.suppress(BaseException):
                await task
