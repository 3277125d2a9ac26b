"""The Docker Engine API server: aiohttp on unix sockets (and TCP with mutual TLS only)."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cais.api import routing
from cais.api.errors import error_middleware

MAX_BODY = 16 * 1024 * 1024  # JSON bodies; tarballs (load, import, archive, build) are streamed


class _ClientFaults(logging.Filter):
    """A malformed HTTP request or a client gone mid-answer is the client's doing (aiohttp answers the
    former 400): one line in the daemon's log, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            record.msg, record.args = "%s: %s", (record.getMessage(), " ".join(str(exc).split()) or type(exc).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_CLIENT_FAULTS = _ClientFaults()


@dataclass
class Listener:
    kind: str  # "unix" | "tcp"
    address: str  # path, or host:port
    ssl_context: ssl.SSLContext | None = None


def make_app(engine, settings: dict | None = None) -> web.Application:  # type: ignore[no-untyped-def]
    # resource modules register their routes on import
    from cais.api import (  # noqa: F401
        attach_ws,
        attestations,
        build_cache,
        containers,
        distribution,
        exec,
        images,
        networks,
        plugins,
        swarm,
        system,
        volumes,
    )
    app = web.Application(middlewares=[error_middleware, routing.version_middleware], client_max_size=MAX_BODY,
                          handler_args={"max_line_size": 16384, "max_field_size": 16384})
    app["engine"] = engine
    app["settings"] = settings or {}
    routing.install(app)
    return app


def tls_context(cacert: str, cert: str, key: str) -> ssl.SSLContext:
    """Mutual TLS: the server proves itself and demands a client certificate signed by `cacert`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cacert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def start_listeners(app: web.Application, listeners: list[Listener], *, socket_group: int | None) -> web.AppRunner:
    logging.getLogger("aiohttp.server").addFilter(_CLIENT_FAULTS)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    for listener in listeners:
        if listener.kind == "unix":
            path = listener.address
            if os.path.exists(path):
                os.unlink(path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            old = os.umask(0o177)
            try:
                site = web.UnixSite(runner, path)
                await site.start()
            finally:
                os.umask(old)
            os.chmod(path, 0o660)
            if socket_group is not None:
                os.chown(path, 0, socket_group)
        else:
            host, _, port = listener.address.rpartition(":")
            site = web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port), ssl_context=listener.ssl_context)
            await site.start()
    return runner
