"""Linux bridges (pyroute2) and veth pairs (rtnl.py): the plumbing of the `bridge` driver.

Functions named host_* work in the calling thread's network namespace (the "host" side);
container_* in a container's, through a socket opened there (netns.socket_in). The container end
of a veth is created directly inside the container's namespace (peer with IFLA_NET_NS_FD) with
its MAC, so its name never clashes with the host's interfaces. A container's start and exit go
through rtnl.py (no thread, no pyroute2); bridges and route dumps through pyroute2.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import socket

from cais.network.errors import InvalidConfig, NetworkError
from cais.network.rtnl import IFA_F_NODAD, Rtnl


def iproute():  # noqa: ANN202 - pyroute2 is imported lazily: the CLI never needs it
    from pyroute2 import IPRoute

    return IPRoute()


def link_index(ipr, name: str) -> int | None:  # noqa: ANN001
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def mac_for(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Docker's scheme: 02:42 followed by the IPv4 address (locally administered, unicast)."""
    tail = address.packed[-4:]
    return "02:42:" + ":".join(f"{b:02x}" for b in tail)


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def parse_mac(text: str) -> str:
    """A --mac-address: six colon-separated hex bytes, unicast (the kernel refuses multicast)."""
    mac = text.strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise InvalidConfig(f"invalid MAC address {text!r}: expected six hex bytes such as 02:42:ac:11:00:02")
    if int(mac[:2], 16) & 1:
        raise InvalidConfig(f"invalid MAC address {text!r}: a multicast address cannot be an interface's")
    return mac


def _add_address(ipr, index: int, address: str, prefixlen: int) -> None:  # noqa: ANN001
    if ":" in address:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen, family=10, flags=IFA_F_NODAD)
    else:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)


def host_ensure_bridge(name: str, addresses: list[tuple[str, int]], mtu: int) -> None:
    """Create (or adopt) bridge `name`, give it the gateway addresses, bring it up. Idempotent."""
    with iproute() as ipr:
        index = link_index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except Exception as e:
                raise NetworkError(f"cannot create bridge {name}: {e}") from e
            index = link_index(ipr, name)
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
        for gateway, prefixlen in addresses:
            if gateway not in have:
                _add_address(ipr, index, gateway, prefixlen)
        ipr.link("set", index=index, mtu=mtu, state="up")


def remove_link(name: str) -> None:
    """Delete a link of the calling thread's network namespace, if there (a veth's peer goes with it)."""
    with Rtnl() as rtnl, contextlib.suppress(OSError):
        rtnl.delete(name)


def host_add_veth(host: Rtnl, bridge: str, host_name: str, peer_name: str, netns_path: str, mtu: int,
                  peer_mac: str) -> None:
    """A veth pair: `host_name` up, a hairpin port of `bridge`, on `host`'s side; `peer_name` with
    `peer_mac` inside the namespace on `netns_path` (container_configure brings it up)."""
    master = host.index(bridge)
    if master is None:
        raise NetworkError(f"bridge {bridge} does not exist")
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        host.add_veth(host_name, peer_name, fd, mtu=mtu, master=master, peer_mac=peer_mac)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise NetworkError(f"interface {peer_name} already exists in the container") from e
        raise NetworkError(f"cannot create veth {host_name}: {e}") from e
    finally:
        os.close(fd)
    try:
        # hairpin mode (IFLA_BRPORT_MODE): a container reaching its own published port on a host
        # address is DNAT'ed back to itself; br_netfilter bridges that frame out of the port it
        # came in by, which the bridge only allows on a hairpin port.
        index = host.index(host_name)
        if index is None:
            raise NetworkError(f"veth {host_name} vanished")
        host.hairpin(index)
    except BaseException:
        with contextlib.suppress(OSError):
            host.delete(host_name)
        raise


def container_configure(ctr: Rtnl, ifname: str, addresses: list[tuple[str, int]], mac: str,
                        gateways: list[str], *, device_routes: bool = False) -> None:
    """Inside the container (`ctr`: a socket of its namespace): addresses, MAC, up, default routes
    through the gateways given.

    `mac` "": the interface keeps its own (an ipvlan one shares its parent's, a veth got it at
    creation); `device_routes`: the default routes go through the interface itself, no gateway
    (ipvlan l3, where the parent routes).
    """
    index = ctr.index(ifname)
    if index is None:
        raise NetworkError(f"interface {ifname} missing in the container")
    if mac:
        ctr.set_link(index, mac=mac, up=False)
    for address, prefixlen in addresses:
        ctr.add_address(index, address, prefixlen)
    ctr.set_link(index, up=True)
    if device_routes:
        gateways = []
        for family in sorted({socket.AF_INET6 if ":" in a else socket.AF_INET for a, _ in addresses}):
            with contextlib.suppress(OSError):
                ctr.add_default_route(index, family=family)
    for gateway in gateways:
        with contextlib.suppress(OSError):  # a second network keeps the first one's default route
            ctr.add_default_route(index, gateway)


def container_free_ifname(ctr: Rtnl) -> str:
    """The first ethN not yet used in the container's namespace (`ctr`: a socket of it)."""
    names = ctr.names()
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def host_routes() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations routed in this namespace (so default pools skip subnets already in use here)."""
    out = []
    with iproute() as ipr:
        for family in (2, 10):
            for route in ipr.get_routes(family=family, table=254):
                dst, plen = route.get_attr("RTA_DST"), route["dst_len"]
                if dst and plen:
                    with contextlib.suppress(ValueError):
                        out.append(ipaddress.ip_network(f"{dst}/{plen}", strict=False))
    return out
