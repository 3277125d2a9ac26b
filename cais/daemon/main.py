"""caisd: serve the Docker Engine API over the engine until SIGTERM.

Containers are not ours to stop: they belong to the supervisor and keep running across caisd's
restarts (docker's live-restore, always on).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import signal
import sys

from cais.daemon.config import ConfigError, Settings, load
from cais.engine import daemonjson, eventloop

log = logging.getLogger("caisd")


class DaemonError(Exception):
    pass


def _log_config(settings: Settings) -> dict:
    """log-driver and log-opts, checked as a container's would be: a bad default stops caisd."""
    from cais.engine.errors import InvalidParameter
    from cais.engine.logs import log_settings
    opts = settings.log_opts
    if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
        raise DaemonError("log-opts must be an object of strings")
    config = {"Type": settings.log_driver, "Config": opts}
    try:
        log_settings(config)
    except InvalidParameter as e:
        raise DaemonError(f"default log config: {e}") from None
    return config


def parse_host(host: str, settings: Settings):  # type: ignore[no-untyped-def]
    from cais.api.server import Listener, tls_context
    if host.startswith("unix://"):
        return Listener("unix", host[len("unix://"):])
    if host.startswith("/"):
        return Listener("unix", host)
    if host.startswith("tcp://") or host.startswith("https://"):
        address = host.split("://", 1)[1].rstrip("/")
        if ":" not in address:
            address += ":2376" if settings.tlsverify else ":2375"
        if not settings.tlsverify and settings.insecure_tcp:
            log.warning("!" * 78)
            log.warning("LISTENING ON %s WITHOUT MUTUAL TLS (--insecure-tcp): anyone who can reach this port "
                        "is root on this machine. Use --tlsverify with client certificates instead.", host)
            log.warning("!" * 78)
            return Listener("tcp", address, None)
        if not settings.tlsverify:
            raise DaemonError(f"refusing to listen on {host} without --tlsverify (mutual TLS): the API gives root "
                              "on this machine to anyone who can reach it (--insecure-tcp forces it)")
        if not (settings.tlscacert and settings.tlscert and settings.tlskey):
            raise DaemonError("--tlsverify needs --tlscacert, --tlscert and --tlskey")
        return Listener("tcp", address, tls_context(settings.tlscacert, settings.tlscert, settings.tlskey))
    raise DaemonError(f"invalid host {host!r}: use unix:///path or tcp://addr:port")


class PidFile:
    """The pid file, locked: a second daemon on the same file fails fast."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            with contextlib.suppress(OSError), open(path) as f:
                other = f.read().strip()
                raise DaemonError(f"pid file found, ensure caisd is not running or delete {path} "
                                  f"(process {other} holds it)") from None
            raise DaemonError(f"pid file {path} is locked by another caisd") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}".encode())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)


async def serve(settings: Settings) -> None:
    from cais.api.server import make_app, start_listeners
    from cais.engine.engine import Engine
    listeners = [parse_host(h, settings) for h in settings.hosts]
    group = None
    if settings.group:
        try:
            group = grp.getgrnam(settings.group).gr_gid
        except KeyError:
            if not settings.group.isdigit():
                raise DaemonError(f"group {settings.group!r} not found") from None
            group = int(settings.group)
    remap = None
    if settings.userns_remap:
        from cais.engine import userns
        remap = userns.resolve(settings.userns_remap)
        log.info("userns-remap: container root is %d:%d on the host", remap.uid, remap.gid)
        old = os.path.join(settings.data_root, f"{remap.uid}.{remap.gid}")
        if os.path.isdir(old):
            log.warning("userns-remap: %s (chowned copies of an earlier cais) is no longer used: images are "
                        "shared, idmapped; remove it once nothing there is needed", old)
    engine = Engine(settings.data_root, settings.exec_root, storage_driver=settings.storage_driver,
                    cgroup_parent=settings.cgroup_parent, init_path=settings.init_path,
                    network={"bridge": settings.bridge, "dns": settings.dns, "mtu": settings.mtu,
                             "bridge_ipam": settings.bridge_ipam, "bridge_ipv6": settings.ipv6}, remap=remap)
    engine.log_config = _log_config(settings)
    engine.namespace_defaults = daemonjson.namespace_defaults(settings.default_ipc_mode, settings.default_cgroupns_mode)
    engine.lock()
    # blocking engine calls run in these threads (a stop waits out its timeout in one): more than
    # asyncio's default of cores + 4, so that a few slow requests never hold up the quick ones
    from concurrent.futures import ThreadPoolExecutor
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(64, thread_name_prefix="caisd"))
    try:
        await asyncio.to_thread(engine.open)
        app = make_app(engine, {"debug": settings.debug, "id": _daemon_id(settings.data_root)})
        runner = await start_listeners(app, listeners, socket_group=group)
        log.info("API listening on %s", ", ".join(settings.hosts))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down; containers keep running under the supervisor")
        await runner.cleanup()
        for listener in listeners:
            if listener.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(listener.address)
    finally:
        if engine._networks is not None:
            engine.networks.shutdown()  # table ip cais goes; the next start re-creates it
        engine.close()


def _daemon_id(data_root: str) -> str:
    import uuid
    path = os.path.join(data_root, "engine-id")
    with contextlib.suppress(OSError), open(path) as f:
        return f.read().strip()
    ident = str(uuid.uuid4())
    os.makedirs(data_root, exist_ok=True)
    with open(path, "w") as f:
        f.write(ident)
    return ident


def main(argv: list[str] | None = None) -> int:
    try:
        settings, args = load(argv)
    except ConfigError as e:
        print(f"caisd: {e}", file=sys.stderr)
        return 1
    if args.version:
        from cais import __version__
        print(f"caisd version {__version__}")
        return 0
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(settings.log_level, settings.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
    if os.geteuid() != 0:
        print("caisd: must run as root", file=sys.stderr)
        return 1
    pidfile = None
    try:
        pidfile = PidFile(settings.pidfile)  # type: ignore[arg-type]
        eventloop.run(serve(settings))
    except (DaemonError, OSError) as e:
        print(f"caisd: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the last line of defence: one line, no traceback
        from cais.engine.errors import EngineError
        if isinstance(e, EngineError):
            print(f"caisd: {e}", file=sys.stderr)
            return 1
        raise
    finally:
        if pidfile is not None:
            pidfile.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
