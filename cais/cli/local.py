"""The in-process engine: a command run without caisd talks to an Engine in its own process.

The requests of a plain `run`/`create`/`start`/`rm`/`inspect`/`ps` (list, create, start, wait,
a non-TTY attach without stdin, inspect, remove) go straight to the engine — the same calls the API
handlers make, with the same errors — so such a command never imports aiohttp (about half of its
start-up). Any other request starts the API app on a private socket in a background thread, once,
and is served there exactly as caisd serves it: every command works without a daemon.

It takes from caisd's daemon.json what decides how containers are made (`userns-remap`, the default
`log-driver` and `log-opts`, `default-ipc-mode` and `default-cgroupns-mode`), checked by the same
code as caisd's, so a container is the same whether caisd or the CLI made it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
from collections.abc import Callable

from cais.cli.client import ApiError, Client, Connection


class _Response:
    """An engine's answer, shaped as the client's Response: status, headers, read/read1/readline."""

    def __init__(self, status: int, data: bytes = b"") -> None:
        self.status = status
        self.headers: dict[str, str] = {"content-type": "application/json"} if data else {}
        self._body = io.BytesIO(data)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read(self, n: int = -1) -> bytes:
        return self._body.read(n)

    def read1(self, n: int = 65536) -> bytes:
        return self._body.read(n)

    def readline(self) -> bytes:
        return self._body.readline()

    def buffered(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()


class _WaitResponse(_Response):
    """POST /wait answers at once (the CLI starts the container then); its body comes at the exit,
    from a thread: readable through fileno() for a select(), as the socket of a real answer."""

    def __init__(self, result: Callable[[], dict]) -> None:
        super().__init__(200)
        self._ready = threading.Event()
        self._pipe = os.pipe()

        def wait() -> None:
            try:
                data = json.dumps(result()).encode() + b"\n"
            except Exception as e:  # noqa: BLE001 - said in the answer, as the API would
                data = json.dumps({"StatusCode": -1, "Error": {"Message": str(e)}}).encode() + b"\n"
            self._body = io.BytesIO(data)
            self._ready.set()
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], b"x")
        threading.Thread(target=wait, daemon=True, name="cais-local-wait").start()

    def _wait(self) -> None:
        self._ready.wait()

    def read(self, n: int = -1) -> bytes:
        self._wait()
        return super().read(n)

    def read1(self, n: int = 65536) -> bytes:
        self._wait()
        return super().read1(n)

    def readline(self) -> bytes:
        self._wait()
        return super().readline()

    def buffered(self) -> bool:
        return self._ready.is_set()

    def fileno(self) -> int:
        return self._pipe[0]

    def close(self) -> None:
        for fd in self._pipe:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Answered:
    """What `send` returns for a request the engine served at once: its answer, or its error."""

    reused = False
    buf = b""

    def __init__(self, run: Callable[..., object], *args: object) -> None:
        self.result: object = None
        self.error: ApiError | None = None
        try:
            self.result = run(*args)
        except ApiError as e:
            self.error = e

    def answer(self):  # type: ignore[no-untyped-def]
        if self.error is not None:
            raise self.error
        return self.result

    def close(self) -> None:
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


def _flag(params: dict, name: str) -> bool:
    value = params.get(name)
    return value is not None and str(value).strip().lower() not in ("", "0", "false", "no")


class LocalEngine:
    def __init__(self, data_root: str, exec_root: str, config_file: str) -> None:
        self.data_root = data_root
        self.exec_root = exec_root
        self.config_file = config_file
        self.engine = None
        self.path = ""
        self.loop = None
        self.runner = None
        self._serving = threading.Lock()

    def start(self) -> LocalClient:
        from cais.cli.main import CliError
        from cais.engine.engine import Engine
        from cais.engine.errors import EngineError
        from cais.engine.userns import from_config
        try:
            remap = from_config(self.config_file)
            log_config, namespaces = _container_defaults(self.config_file)
        except EngineError as e:
            raise CliError(f"cais: {e}") from None
        engine = Engine(self.data_root, self.exec_root,
                        cgroup_parent=os.environ.get("CAIS_CGROUP_PARENT", "/cais"), remap=remap)
        if log_config is not None:
            engine.log_config = log_config
        engine.namespace_defaults = namespaces
        try:
            engine.lock()
            engine.open()
        except EngineError as e:
            engine.close()
            raise CliError(f"cais: {e}") from None
        self.engine = engine
        return LocalClient(self)

    def serve(self) -> str:
        """The API app on a private socket (started on first use); its path."""
        with self._serving:
            if not self.path:
                self._serve()
        return self.path

    def _serve(self) -> None:
        import asyncio

        from cais.api.server import Listener, make_app, start_listeners
        path = os.path.join(self.exec_root, f"cli-{os.getpid()}.sock")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self.runner = await start_listeners(make_app(self.engine), [Listener("unix", path)], socket_group=None)
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            loop.run_forever()

        threading.Thread(target=run, daemon=True, name="cais-local-engine").start()
        ready.wait(30)
        self.loop, self.path = loop, path

    def stop(self) -> None:
        if self.loop is not None and self.runner is not None:
            import asyncio
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if self.engine is not None:
            self.engine.close()


def _container_defaults(path: str) -> tuple[dict | None, dict[str, str]]:
    """daemon.json's log-driver and log-opts (None if it sets neither), and its default-ipc-mode and
    default-cgroupns-mode as the engine's namespace defaults, checked as caisd checks them."""
    from cais.engine import daemonjson
    from cais.engine.errors import InvalidParameter
    try:
        config = daemonjson.read(path)
    except (OSError, ValueError) as e:
        raise InvalidParameter(f"cannot read {path}: {e}") from None
    config = config if isinstance(config, dict) else {}
    try:
        namespaces = daemonjson.namespace_defaults(config.get("default-ipc-mode"), config.get("default-cgroupns-mode"))
    except ValueError as e:
        raise InvalidParameter(f"{path}: {e}") from None
    return _default_log_config(path, config), namespaces


def _default_log_config(path: str, config: dict) -> dict | None:
    from cais.engine.errors import InvalidParameter
    from cais.engine.logs import log_settings
    if not ("log-driver" in config or "log-opts" in config):
        return None
    log_config = {"Type": config.get("log-driver") or "json-file", "Config": config.get("log-opts") or {}}
    try:
        log_settings(log_config)
    except InvalidParameter as e:
        raise InvalidParameter(f"{path}: default log config: {e}") from None
    return log_config


_ID = r"(?P<id>[^/]+)"
_DIRECT = [(method, re.compile(pattern), name) for method, pattern, name in (
    ("GET", r"/containers/json", "_list"),
    ("POST", r"/containers/create", "_create"),
    ("POST", rf"/containers/{_ID}/start", "_start"),
    ("POST", rf"/containers/{_ID}/wait", "_wait"),
    ("GET", rf"/containers/{_ID}/json", "_inspect"),
    ("DELETE", rf"/containers/{_ID}", "_remove"),
)]
_ATTACH = re.compile(rf"/containers/{_ID}/attach")


class LocalClient(Client):
    """A Client whose plain container requests are engine calls; the rest go to the private API socket."""

    def __init__(self, local: LocalEngine) -> None:
        super().__init__("unix://")  # the socket's path is known once the API is served (_open)
        self.local = local
        self.engine = local.engine

    def _open(self, timeout: float | None = None) -> Connection:
        self.address = self.local.serve()
        return super()._open(timeout)

    def send(self, method: str, path: str, params: dict | None = None, body: object = None,  # type: ignore[override]
             headers: dict | None = None, timeout: float | None = None) -> Connection | _Answered:
        if not headers and (body is None or isinstance(body, dict)):
            for verb, pattern, name in _DIRECT:
                m = pattern.fullmatch(path)
                if verb == method and m:
                    return _Answered(self._engine_call, getattr(self, name), *m.groups(), params or {}, body)
        return super().send(method, path, params, body, headers, timeout)

    def answer(self, conn: Connection | _Answered, method: str = "GET"):  # type: ignore[no-untyped-def, override]
        if isinstance(conn, _Answered):
            return conn.answer()
        return super().answer(conn, method)

    def send_hijack(self, path: str, params: dict | None = None,  # type: ignore[override]
                    body: object = None) -> Connection | _Answered:
        params = params or {}
        m = _ATTACH.fullmatch(path)
        if m and body is None and not _flag(params, "stdin") and not _flag(params, "logs") and _flag(params, "stream"):
            record = self._engine_call(self.engine.get, m.group("id"))
            if not record["Config"]["Tty"]:
                return _Answered(self._engine_call, self._attach, record["Id"], params)
        return super().send_hijack(path, params, body)

    def hijacked(self, conn: Connection | _Answered):  # type: ignore[no-untyped-def, override]
        if isinstance(conn, _Answered):
            return conn.answer()
        return super().hijacked(conn)

    @staticmethod
    def _engine_call(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """An engine call with the API's answers to errors: an EngineError's status (304, "already
        started", is an answer, not an error), else 500."""
        from cais.engine.errors import EngineError
        try:
            return fn(*args, **kwargs)
        except EngineError as e:
            if e.status < 400:
                return _Response(e.status)
            raise ApiError(e.status, str(e)) from None
        except ApiError:
            raise
        except Exception as e:
            raise ApiError(500, f"{type(e).__name__}: {e}" if not str(e) else str(e)) from None

    # the API handlers' calls (cais/api/containers.py), for requests that need nothing more
    def _create(self, params: dict, body: dict | None) -> _Response:
        if not body:
            raise ApiError(400, "request body is required")
        result = self.engine.create(body, params.get("name") or None)
        return _Response(201, json.dumps(result).encode())

    def _list(self, params: dict, body: object) -> _Response:
        filters = params.get("filters") or {}
        if not all(isinstance(v, list) for v in filters.values()):
            raise ApiError(400, "invalid filters: expected lists of values")
        limit = params.get("limit")
        result = self.engine.list(all=_flag(params, "all"), filters={k: [str(v) for v in vals] for k, vals in
                                                                     filters.items()},
                                  limit=int(limit) if limit not in (None, "") else None)
        return _Response(200, json.dumps(result).encode())

    def _start(self, ref: str, params: dict, body: object) -> _Response:
        self.engine.start(ref)
        return _Response(204)

    def _wait(self, ref: str, params: dict, body: object) -> _Response:
        condition = params.get("condition") or "not-running"
        cid, token = self.engine.wait_token(ref, condition)

        def result() -> dict:
            while (got := self.engine.wait(cid, token, condition, 1.0)) is None:
                pass
            return got
        return _WaitResponse(result)

    def _inspect(self, ref: str, params: dict, body: object) -> _Response:
        result = self.engine.inspect(ref)
        if _flag(params, "size"):
            result["SizeRw"] = result["SizeRootFs"] = self.engine.storage.size(result["Id"])
        return _Response(200, json.dumps(result).encode())

    def _remove(self, ref: str, params: dict, body: object) -> _Response:
        self.engine.remove(ref, force=_flag(params, "force"), volumes=_flag(params, "v"))
        return _Response(204)

    def _attach(self, cid: str, params: dict):  # type: ignore[no-untyped-def]
        _, sock = self.engine.attach(cid, stdin=False, stdout=_flag(params, "stdout"), stderr=_flag(params, "stderr"))
        return _docker_frames(sock)


def _docker_frames(supervisor):  # type: ignore[no-untyped-def]
    """The supervisor's attach stream is docker's framing plus private CONTROL frames (the exit
    code): relay it without them, as the API's bridge does."""
    import socket

    from cais.engine import frames
    mine, theirs = socket.socketpair()

    def relay() -> None:
        with supervisor, theirs, supervisor.makefile("rb") as f, contextlib.suppress(OSError):
            while len(head := f.read(frames.HEADER.size)) == frames.HEADER.size:
                stream, length = frames.HEADER.unpack(head)
                data = f.read(length)
                if len(data) < length:
                    break
                if stream != frames.CONTROL:
                    theirs.sendall(head + data)

    threading.Thread(target=relay, daemon=True, name="cais-local-attach").start()
    return mine
