"""python -m cais.registry.server --addr HOST:PORT --root DIR [--htpasswd FILE] [--tls-cert F --tls-key F] [--gc]"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import ssl
import sys

from cais.registry.server.app import UPLOAD_TTL
from cais.registry.server.htpasswd import HtpasswdError


def parse_addr(addr: str) -> tuple[str, int]:
    """'127.0.0.1:5000', '[::1]:5000', ':5000' (every address) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {addr!r}: want HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None, prog: str = "python -m cais.registry.server") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Serve an OCI distribution registry.")
    parser.add_argument("--addr", default="127.0.0.1:5000", help="HOST:PORT to listen on (default %(default)s)")
    parser.add_argument("--root", required=True, help="directory holding the registry's blobs and metadata")
    parser.add_argument("--htpasswd", help="require Basic auth against this htpasswd file (bcrypt entries)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM, chain included)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--upload-ttl", type=float, default=UPLOAD_TTL,
                        help="seconds after which an unfinished upload is removed (default %(default)s)")
    parser.add_argument("--gc", action="store_true",
                        help="delete the blobs no manifest references, then exit (run it with the server stopped)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("cais.registry.server")
    try:
        host, port = parse_addr(args.addr)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        ssl_context = None
        if args.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.gc:
            from cais.registry.server.storage import RegistryStorage
            removed, size = RegistryStorage(args.root).collect_garbage()
            print(f"removed {removed} blobs, {size} bytes")
            return 0
        from aiohttp import web

        from cais.registry.server.app import make_app
        app = make_app(args.root, args.htpasswd, args.upload_ttl)
    except (ValueError, OSError, HtpasswdError) as e:
        print(f"cais registry: {e}", file=sys.stderr)
        return 2
    if not _is_loopback(host):
        if args.htpasswd is None:
            log.warning("serving %s without authentication: anyone who reaches it can push", args.addr)
        if ssl_context is None:
            log.warning("serving %s over plain HTTP: clients must list it in insecure-registries", args.addr)
    try:
        web.run_app(app, host=host, port=port, ssl_context=ssl_context, print=None,
                    access_log_format='%a "%r" %s %b', handle_signals=True)
    except OSError as e:
        print(f"cais registry: cannot listen on {args.addr}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
