"""Published ports: `-p [hostip:]hostport:containerport[/proto]`, ranges, `-P`, random ports.

A published host port is reserved by a socket cais binds (and, for TCP, listens on) in the
host's namespace for as long as the container runs: another program on the host then gets
EADDRINUSE, and a port already in use gives a clear error at start. The traffic itself never
reaches that socket: nftables DNATs it to the container first (see firewall.py).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass

from cais.network.errors import Conflict, InvalidConfig

_SPEC = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(?P<host>[0-9-]*):)?(?P<ctr>[0-9-]+)(?:/(?P<proto>\w+))?$")


@dataclass(frozen=True)
class Binding:
    proto: str
    container_port: int
    host_ip: str
    host_port: int  # 0: pick a free port
    host_port_end: int = 0  # a range host_port..host_port_end: the first free one


def _range(text: str, what: str) -> list[int]:
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidConfig(f"invalid {what} port {text!r}") from None
    if not (0 < first <= last <= 65535):
        raise InvalidConfig(f"invalid {what} port range {text!r}")
    return list(range(first, last + 1))


def parse_publish(spec: str) -> dict[str, list[dict]]:
    """A `-p` value as the API's PortBindings: {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise InvalidConfig(f"invalid publish spec {spec!r}: expected [hostip:][hostport:]containerport[/tcp|udp]")
    proto = (m["proto"] or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidConfig(f"invalid protocol {proto!r} in {spec!r}")
    host_ip = (m["ip"] or "").strip("[]")
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidConfig(f"invalid host IP {host_ip!r} in {spec!r}") from None
    ctr = _range(m["ctr"], "container")
    host = _range(m["host"], "host") if m["host"] else []
    if host and len(host) != len(ctr) and len(ctr) != 1:
        raise InvalidConfig(f"invalid ranges in {spec!r}: host and container ranges differ in size")
    out: dict[str, list[dict]] = {}
    if host and len(ctr) == 1 and len(host) > 1:  # 8000-8010:80: any free port of the range
        out[f"{ctr[0]}/{proto}"] = [{"HostIp": host_ip, "HostPort": f"{host[0]}-{host[-1]}"}]
        return out
    for i, port in enumerate(ctr):
        out.setdefault(f"{port}/{proto}", []).append(
            {"HostIp": host_ip, "HostPort": str(host[i]) if host else ""})
    return out


def bindings(port_bindings: dict | None, exposed: dict | None = None, publish_all: bool = False) -> list[Binding]:
    """The API's PortBindings (plus EXPOSE'd ports with -P) as a flat list; host ranges stay to pick."""
    out: list[Binding] = []
    seen: set[str] = set()
    for key, hosts in (port_bindings or {}).items():
        port, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        (cport,) = _range(port, "container")
        seen.add(f"{cport}/{proto}")
        for h in hosts or [{}]:
            hp = str((h or {}).get("HostPort") or "")
            hip = str((h or {}).get("HostIp") or "")
            span = _range(hp, "host") if hp else [0]
            out.append(Binding(proto, cport, hip, span[0], span[-1] if len(span) > 1 else 0))
    if publish_all:
        for key in exposed or {}:
            port, _, proto = str(key).partition("/")
            if f"{port}/{proto or 'tcp'}" not in seen:
                out.append(Binding(proto or "tcp", _range(port, "container")[0], "", 0))
    return out


def _reserve_one(proto: str, host_ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    shown = f"[{host_ip}]" if family == socket.AF_INET6 else host_ip or "0.0.0.0"
    try:
        if family == socket.AF_INET6:  # [::] and 0.0.0.0 are two bindings, as docker's
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":  # a proxied connection's TIME_WAIT must not hold the port after a restart
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", port))
        if proto == "tcp":
            sock.listen(0)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"Bind for {shown}:{port} failed: port is already allocated") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidConfig(f"cannot publish on {shown}: not an address of this host") from None
        raise
    return sock


_RANDOM_TRIES = 8  # a random port free on 0.0.0.0 but taken on [::]: another random port


class Reservation:
    """Sockets holding the host ports of one container; close() frees them."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.bound: list[Binding] = []

    def take(self, binding: Binding, dual_stack: bool = False) -> None:
        """Bind the host port of `binding`; with `dual_stack`, a binding on every address ("") is
        one on 0.0.0.0 and one on [::] with the same port (docker's default on hosts with IPv6)."""
        ips = [binding.host_ip, "::"] if dual_stack and not binding.host_ip else [binding.host_ip]
        if binding.host_port_end:
            candidates = list(range(binding.host_port, binding.host_port_end + 1))
        else:
            candidates = [binding.host_port] * (1 if binding.host_port else _RANDOM_TRIES)
        error = Conflict(f"no free host port for {binding.container_port}/{binding.proto}")
        for port in candidates:
            socks: list[socket.socket] = []
            try:
                for ip in ips:
                    socks.append(_reserve_one(binding.proto, ip, socks[0].getsockname()[1] if socks else port))
            except BaseException as e:
                for sock in socks:
                    sock.close()
                if not isinstance(e, Conflict):
                    raise
                error = e
                continue
            self.sockets += socks
            self.bound += [Binding(binding.proto, binding.container_port, ip, sock.getsockname()[1])
                           for ip, sock in zip(ips, socks, strict=True)]
            return
        if binding.host_port_end:
            raise Conflict(f"no free host port in {binding.host_port}-{binding.host_port_end} "
                           f"for {binding.container_port}/{binding.proto}")
        raise error

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets, self.bound = [], []


def host_has_ipv6() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:  # EAFNOSUPPORT: a kernel booted with ipv6.disable=1
        return False
    return True


def reserve(wanted: list[Binding]) -> Reservation:
    """Reserve every binding or none (a clear Conflict names the first port in use).

    When this host has IPv6, a binding on every address covers both families, as docker's (the
    manager DNATs or relays the IPv6 half).
    """
    for b in wanted:
        if b.proto not in ("tcp", "udp"):
            raise InvalidConfig(f"cannot publish {b.container_port}/{b.proto}: only tcp and udp are supported")
    dual = host_has_ipv6()
    res = Reservation()
    try:
        for b in wanted:
            res.take(b, dual_stack=dual)
    except BaseException:
        res.close()
        raise
    return res


def as_api(bound: list[Binding], all_ports: list[Binding], exposed: dict | None = None) -> dict[str, list[dict] | None]:
    """NetworkSettings.Ports: every exposed/published port, with the host ports actually bound."""
    out: dict[str, list[dict] | None] = {}
    for key in exposed or {}:  # EXPOSE'd, not published: null, like dockerd
        port, _, proto = str(key).partition("/")
        out[f"{port}/{proto or 'tcp'}"] = None
    for b in all_ports:
        out.setdefault(f"{b.container_port}/{b.proto}", None)
    for b in bound:
        entry = {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}
        current = out.get(f"{b.container_port}/{b.proto}") or []
        out[f"{b.container_port}/{b.proto}"] = [*current, entry]
    return out


def summary(api_ports: dict | None) -> list[dict]:
    """`docker ps`'s Ports from NetworkSettings.Ports."""
    out: list[dict] = []
    for key, hosts in (api_ports or {}).items():
        port, _, proto = key.partition("/")
        if not hosts:
            out.append({"PrivatePort": int(port), "Type": proto})
        for h in hosts or []:
            out.append({"IP": h["HostIp"], "PrivatePort": int(port), "PublicPort": int(h["HostPort"]), "Type": proto})
    return out
