"""Just enough rtnetlink for a container's start and exit: veths, addresses, default routes, lookups.

pyroute2 (kept for the rest: bridges, macvlan parents, route dumps) costs ~1 ms per IPRoute(), a
dump of every link per name lookup, and runs its own event loop, hence a fresh thread per call.
A container needs about ten requests on its way up and one on its way down: here each is one
send and one receive on a NETLINK_ROUTE socket of the namespace it was opened in (see
netns.socket_in for a container's), its answer read before the next is sent.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 19, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 12, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER, IFLA_BRPORT_MODE = 1, 2, 1, 4
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_OIF, RTA_GATEWAY = 4, 5
IFF_UP = 0x1
IFA_F_NODAD = 0x02  # IPv6 addresses usable at once: cais made the link, no duplicate can exist on it
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RTN_UNICAST = 254, 3, 0, 253, 1
BRIDGE_MODE_HAIRPIN = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src len, tos, table, protocol, scope, type, flags
_ATTR = struct.Struct("=HH")


def attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ifinfo(index: int = 0, *, up: bool = False, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def attrs(data: bytes, offset: int) -> dict[int, bytes]:
    """The top-level attributes of a message body from `offset`, by type (nesting flag cleared)."""
    out = {}
    while offset + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        out[kind & ~NLA_F_NESTED] = data[offset + _ATTR.size:offset + size]
        offset += (size + 3) & ~3
    return out


def open_socket() -> socket.socket:
    """A NETLINK_ROUTE socket of the calling thread's network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def session(path: str | None = None) -> Rtnl:
    """Requests in the network namespace bound on `path` (None: the calling thread's)."""
    if path is None:
        return Rtnl()
    from cais.network import netns

    return Rtnl(netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))


class Rtnl:
    """Requests on one NETLINK_ROUTE socket (by default one of the calling thread's namespace)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock if sock is not None else open_socket()
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, flags: int = NLM_F_ACK) -> list[bytes]:
        """Send one request; the bodies of the messages answered (a dump's, or a get's one).
        A negative acknowledgement raises OSError with its errno."""
        self.seq += 1
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                size, mtype, _, seq, _ = _HEADER.unpack_from(data, offset)
                body_of = data[offset + _HEADER.size:offset + size]
                offset += max((size + 3) & ~3, _HEADER.size)
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body_of)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append(body_of)
                if not flags & (NLM_F_DUMP | NLM_F_ACK):
                    return out

    # ---- links ----------------------------------------------------------------------------
    def index(self, name: str) -> int | None:
        """The index of link `name`, None when there is none."""
        try:
            (body,) = self.request(RTM_GETLINK, _ifinfo() + attr(IFLA_IFNAME, _name(name)), flags=0)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return _IFINFO.unpack_from(body)[2]

    def names(self) -> set[str]:
        """The names of every link."""
        return {attrs(body, _IFINFO.size).get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
                for body in self.request(RTM_GETLINK, _ifinfo(), flags=NLM_F_DUMP)}

    def add_veth(self, name: str, peer: str, netns_fd: int, *, mtu: int, master: int, peer_mac: str) -> None:
        """A veth pair: `name` here, up, a port of bridge `master`; `peer` (MAC `peer_mac`) inside the
        namespace of `netns_fd`, so its name never meets the host's interfaces. The peer is brought
        up by set_link: the kernel opens it before the pair is joined, which fails (ENOTCONN)."""
        peer_info = (_ifinfo() + attr(IFLA_IFNAME, _name(peer)) + attr(IFLA_MTU, _u32(mtu))
                     + attr(IFLA_NET_NS_FD, _u32(netns_fd)) + attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", ""))))
        body = (_ifinfo(up=True) + attr(IFLA_IFNAME, _name(name)) + attr(IFLA_MTU, _u32(mtu))
                + attr(IFLA_MASTER, _u32(master))
                + nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth"),
                         nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))))
        self.request(RTM_NEWLINK, body, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def hairpin(self, index: int) -> None:
        """Hairpin mode on bridge port `index` (IFLA_BRPORT_MODE)."""
        body = _ifinfo(index, family=socket.AF_BRIDGE) + nested(IFLA_PROTINFO, attr(IFLA_BRPORT_MODE,
                                                                                     bytes([BRIDGE_MODE_HAIRPIN])))
        self.request(RTM_SETLINK, body)

    def set_link(self, index: int, *, mac: str = "", up: bool = True) -> None:
        body = _ifinfo(index, up=up) + (attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) if mac else b"")
        self.request(RTM_NEWLINK, body)

    def delete(self, name: str) -> bool:
        """Delete link `name` (a veth's peer goes with it): whether there was one."""
        try:
            self.request(RTM_DELLINK, _ifinfo() + attr(IFLA_IFNAME, _name(name)))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    # ---- addresses and routes -------------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """`address/prefixlen` on link `index`; an IPv4 one with its broadcast address, as docker's."""
        ip = ipaddress.ip_address(address)
        if ip.version == 6:
            head = _IFADDR.pack(socket.AF_INET6, prefixlen, IFA_F_NODAD, RT_SCOPE_UNIVERSE, index)
            body = head + attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed)
        else:
            head = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            body = head + attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed)
            if prefixlen < 31:
                broadcast = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False).broadcast_address
                body += attr(IFA_BROADCAST, broadcast.packed)
        self.request(RTM_NEWADDR, body, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, index: int, gateway: str = "", *, family: int = socket.AF_INET) -> None:
        """The default route of `family` through `gateway` on link `index` (none: through the link itself)."""
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        if gateway:
            family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        body = (_RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
                + (attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed) if gateway else b"")
                + attr(RTA_OIF, _u32(index)))
        self.request(RTM_NEWROUTE, body, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
