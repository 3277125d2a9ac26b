"""Linux bridges and veth pairs over netlink (pyroute2): the plumbing of the `bridge` driver.

Functions named host_* run in the calling thread's network namespace (the "host" side);
container_* run in a container's namespace (see netns.run_in). The container end of a veth is
created directly inside the container's namespace (peer with IFLA_NET_NS_FD), so its name never
clashes with the host's interfaces.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re

from cais.network.errors import InvalidConfig, NetworkError


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


BRIDGE_MODE_HAIRPIN = 1
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def parse_mac(text: str) -> str:
    """A --mac-address: six colon-separated hex bytes, unicast (the kernel refuses multicast)."""
    mac = text.strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise InvalidConfig(f"invalid MAC address {text!r}: expected six hex bytes such as 02:42:ac:11:00:02")
    if int(mac[:2], 16) & 1:
        raise InvalidConfig(f"invalid MAC address {text!r}: a multicast address cannot be an interface's")
    return mac


IFA_F_NODAD = 0x02  # IPv6 addresses usable at once: cais made the link, no duplicate can exist on it


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
    """Delete a link of the calling thread's network namespace (netns.run_in picks it), if there."""
    with iproute() as ipr:
        index = link_index(ipr, name)
        if index is not None:
            with contextlib.suppress(Exception):
                ipr.link("del", index=index)


def host_add_veth(bridge: str, host_name: str, peer_name: str, netns_path: str, mtu: int) -> None:
    """A veth pair: `host_name` on `bridge` here, `peer_name` inside the namespace on `netns_path`."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with iproute() as ipr:
            master = link_index(ipr, bridge)
            if master is None:
                raise NetworkError(f"bridge {bridge} does not exist")
            try:
                ipr.link("add", ifname=host_name, kind="veth", mtu=mtu,
                         peer={"ifname": peer_name, "net_ns_fd": fd, "mtu": mtu})
            except Exception as e:
                if getattr(e, "code", None) == errno.EEXIST:
                    raise NetworkError(f"interface {peer_name} already exists in the container") from e
                raise NetworkError(f"cannot create veth {host_name}: {e}") from e
            index = link_index(ipr, host_name)
            try:
                ipr.link("set", index=index, master=master, state="up")
                # hairpin mode (IFLA_BRPORT_MODE): a container reaching its own published port on a
                # host address is DNAT'ed back to itself; br_netfilter bridges that frame out of the
                # port it came in by, which the bridge only allows on a hairpin port.
                ipr.brport("set", index=index, mode=BRIDGE_MODE_HAIRPIN)
            except BaseException:
                with contextlib.suppress(Exception):
                    ipr.link("del", index=index)
                raise
    finally:
        os.close(fd)


def container_configure(ifname: str, addresses: list[tuple[str, int]], mac: str, gateways: list[str], *,
                        device_routes: bool = False) -> None:
    """Inside the container: addresses, MAC, up, and default routes through the gateways given.

    `mac` "": the interface keeps its own (an ipvlan one shares its parent's); `device_routes`: the
    default routes go through the interface itself, no gateway (ipvlan l3, where the parent routes).
    """
    with iproute() as ipr:
        index = link_index(ipr, ifname)
        if index is None:
            raise NetworkError(f"interface {ifname} missing in the container")
        if mac:
            ipr.link("set", index=index, address=mac)
        for address, prefixlen in addresses:
            _add_address(ipr, index, address, prefixlen)
        ipr.link("set", index=index, state="up")
        if device_routes:
            gateways = []
            for family in sorted({10 if ":" in a else 2 for a, _ in addresses}):
                with contextlib.suppress(Exception):
                    ipr.route("add", dst="::/0" if family == 10 else "0.0.0.0/0", oif=index, family=family)
        for gateway in gateways:
            with contextlib.suppress(Exception):  # a second network keeps the first one's default route
                if ":" in gateway:
                    ipr.route("add", dst="::/0", gateway=gateway, oif=index, family=10)
                else:
                    ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)


def container_free_ifname() -> str:
    """The first ethN not yet used in the container's namespace."""
    with iproute() as ipr:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
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
