"""Where a registry domain is reached: endpoints (mirrors, https/http) and TLS settings.

As docker does: `docker.io` is served by `registry-1.docker.io` (after any configured mirrors);
a registry is *insecure* when listed in `insecure-registries` (host[:port] or CIDR) or on loopback,
and then HTTPS without verification is tried first and plain HTTP second; every other registry is
HTTPS only, verified against the system CAs plus the `*.crt` files of `certs.d/HOST[:PORT]/`, with
a client certificate from the `*.cert`/`*.key` pairs there.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass, field

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
CERTS_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")
LOOPBACK = ("127.0.0.0/8", "::1/128")


class HostsError(Exception):
    """A registry's TLS or mirror configuration is unusable."""


@dataclass(frozen=True)
class Endpoint:
    host: str  # host[:port] as it goes in the URL
    scheme: str = "https"
    verify: bool = True
    mirror: bool = False

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"


@dataclass
class RegistryHosts:
    """The daemon-wide registry settings (daemon.json's `registry-mirrors`, `insecure-registries`)."""

    mirrors: list[str] = field(default_factory=list)
    insecure: list[str] = field(default_factory=list)
    certs_dirs: tuple[str, ...] = CERTS_DIRS
    _contexts: dict[tuple[str, bool], ssl.SSLContext] = field(default_factory=dict, repr=False)

    def endpoints(self, domain: str) -> list[Endpoint]:
        """Endpoints to try, in order, for a reference's domain."""
        found: list[Endpoint] = []
        if domain == DOCKER_HUB:
            for mirror in self.mirrors:
                scheme, _, host = mirror.rstrip("/").rpartition("://")
                if scheme not in ("http", "https", "") or not host or "/" in host:
                    raise HostsError(f"invalid registry mirror {mirror!r}: want https://HOST[:PORT]")
                found += self._for_host(host, mirror=True, scheme=scheme or "https")
            domain = DOCKER_HUB_API
        return found + self._for_host(domain)

    def is_insecure(self, host: str) -> bool:
        name = _hostname(host)
        if host in self.insecure or name in self.insecure or name == "localhost":
            return True
        try:
            addr = ipaddress.ip_address(name)
        except ValueError:
            return False
        for entry in (*LOOPBACK, *self.insecure):
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def _for_host(self, host: str, mirror: bool = False, scheme: str = "https") -> list[Endpoint]:
        if scheme == "http":
            return [Endpoint(host, "http", False, mirror)]
        if self.is_insecure(host):
            return [Endpoint(host, "https", False, mirror), Endpoint(host, "http", False, mirror)]
        return [Endpoint(host, "https", True, mirror)]

    def ssl_context(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        if endpoint.scheme != "https":
            return None
        key = (endpoint.host, endpoint.verify)
        if key not in self._contexts:
            self._contexts[key] = self._make_context(endpoint.host, endpoint.verify)
        return self._contexts[key]

    def _make_context(self, host: str, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for top in self.certs_dirs:
            directory = os.path.join(top, host)
            if os.sep in host or host.startswith(".") or not os.path.isdir(directory):
                continue
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                try:
                    if name.endswith(".crt"):
                        ctx.load_verify_locations(cafile=path)
                    elif name.endswith(".cert"):
                        keyfile = path[: -len(".cert")] + ".key"
                        if not os.path.exists(keyfile):
                            raise HostsError(f"missing key {keyfile} for client certificate {path}")
                        ctx.load_cert_chain(path, keyfile)
                    elif name.endswith(".key") and not os.path.exists(path[: -len(".key")] + ".cert"):
                        raise HostsError(f"missing client certificate {path[:-4]}.cert for key {path}")
                except (ssl.SSLError, OSError) as e:
                    raise HostsError(f"cannot load {path}: {e}") from None
        return ctx


def _hostname(host: str) -> str:
    """'[::1]:5000' -> '::1', 'example.com:5000' -> 'example.com'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host
