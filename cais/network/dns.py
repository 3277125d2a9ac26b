"""The embedded DNS server: 127.0.0.11 inside each container on a user-defined network.

One asyncio loop in one daemon thread serves every container. For each container, a UDP and a
TCP socket of the container's namespace (netns.socket_in: a socket stays in the namespace it was
created in) are bound on 127.0.0.11:53, then handed to the loop. Names of containers,
`--network-alias` and short ids on the networks the asking container shares are answered here
(and reverse PTR questions about their addresses, with `NAME.NETWORK` as docker);
anything else is forwarded, from the daemon's own namespace, to the upstream resolvers.
UDP and TCP are served; questions are forwarded upstream over UDP (answers too large for a 4 KiB
datagram stay truncated).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable

from cais.network import netns

ADDRESS = "127.0.0.11"
_A, _PTR, _AAAA = 1, 12, 28

Resolver = Callable[[str, str], list[str] | None]  # (asking container id, name) -> addresses, None: unknown
Reverser = Callable[[str, str], str | None]  # (asking container id, address) -> its name, None: unknown


def reverse_address(name: str) -> str | None:
    """The address of a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`), else None."""
    with contextlib.suppress(ValueError):
        if name.endswith(".in-addr.arpa"):
            parts = name[:-len(".in-addr.arpa")].split(".")
            return str(ipaddress.IPv4Address(".".join(reversed(parts)))) if len(parts) == 4 else None
        if name.endswith(".ip6.arpa"):
            nibbles = name[:-len(".ip6.arpa")].split(".")
            if len(nibbles) == 32 and all(len(n) == 1 for n in nibbles):
                return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
    return None


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"


def _question(packet: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, end offset of the question) of a query, None when malformed."""
    if len(packet) < 12 or struct.unpack("!H", packet[4:6])[0] != 1:
        return None
    labels, pos = [], 12
    while pos < len(packet):
        n = packet[pos]
        if n == 0:
            break
        if n > 63 or pos + 1 + n > len(packet):
            return None
        labels.append(packet[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    if pos + 5 > len(packet):
        return None
    qtype = struct.unpack("!H", packet[pos + 1:pos + 3])[0]
    return ".".join(labels).lower(), qtype, pos + 5


def answer(packet: bytes, end: int, qtype: int, addresses: list[str]) -> bytes:
    """A response to the query: the records of `qtype` among `addresses` (none: NOERROR, no data)."""
    version = 4 if qtype == _A else 6
    records = [ipaddress.ip_address(a).packed for a in addresses if ipaddress.ip_address(a).version == version]
    flags = 0x8400 | (packet[2] & 0x01) << 8 | 0x80  # QR, AA, RD copied, RA
    header = packet[:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 0)
    body = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 600, len(r)) + r for r in records)
    return header + packet[12:end] + body


def ptr_answer(packet: bytes, end: int, name: str) -> bytes:
    """A response to a PTR query: one record naming `name`."""
    flags = 0x8400 | (packet[2] & 0x01) << 8 | 0x80
    rdata = _encode_name(name)
    return (packet[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0) + packet[12:end]
            + b"\xc0\x0c" + struct.pack("!HHIH", _PTR, 1, 600, len(rdata)) + rdata)


def servfail(packet: bytes) -> bytes:
    rd = (packet[2] & 0x01) << 8
    return packet[:2] + struct.pack("!H", 0x8082 | rd) + packet[4:6] + b"\0" * 6 + packet[12:]


class DnsServer:
    def __init__(self, resolve: Resolver, upstreams: list[str], reverse: Reverser | None = None) -> None:
        self.resolve = resolve
        self.reverse = reverse
        self.upstreams = upstreams
        self.own_upstreams: dict[str, list[str]] = {}  # a container's --dns, used instead of `upstreams`
        self.sockets: dict[str, tuple[socket.socket, asyncio.Server]] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cais-dns", daemon=True)
        self.thread.start()

    def add(self, owner: str, netns_path: str, upstreams: list[str] | None = None) -> None:
        """Serve the container `owner` whose namespace is bound on `netns_path` (UDP and TCP);
        `upstreams`: its own --dns servers, asked instead of the daemon's, as docker does."""
        if upstreams:
            self.own_upstreams[owner] = list(upstreams)
        if owner in self.sockets:
            return

        udp = netns.socket_in(netns_path, socket.AF_INET, socket.SOCK_DGRAM)
        tcp = netns.socket_in(netns_path, socket.AF_INET, socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):
                sock.setblocking(False)
                sock.bind((ADDRESS, 53))
            tcp.listen(64)
        except BaseException:
            udp.close()
            tcp.close()
            raise

        async def start() -> asyncio.Server:
            self.loop.add_reader(udp, self._readable, owner, udp)
            return await asyncio.start_server(lambda r, w: self._tcp(owner, r, w), sock=tcp)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.sockets[owner] = (udp, server)

    def remove(self, owner: str) -> None:
        self.own_upstreams.pop(owner, None)
        entry = self.sockets.pop(owner, None)
        if entry is not None:
            udp, server = entry

            async def drop() -> None:
                self.loop.remove_reader(udp)
                udp.close()
                server.close()

            asyncio.run_coroutine_threadsafe(drop(), self.loop).result(5)

    def close(self) -> None:
        for owner in list(self.sockets):
            self.remove(owner)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _local(self, owner: str, packet: bytes) -> bytes | None:
        """The answer to a question about a container, None for anything to forward."""
        q = _question(packet)
        if q is None:
            return b""
        name, qtype, end = q
        if qtype == _PTR and self.reverse is not None:
            address = reverse_address(name.rstrip("."))
            named = self.reverse(owner, address) if address else None
            return ptr_answer(packet, end, named) if named else None
        found = self.resolve(owner, name.rstrip(".")) if qtype in (_A, _AAAA) else None
        return answer(packet, end, qtype, found) if found is not None else None

    async def _reply(self, owner: str, packet: bytes) -> bytes:
        local = self._local(owner, packet)
        if local is not None:
            return local
        for server in self.own_upstreams.get(owner) or self.upstreams:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "53")
            try:
                return await asyncio.wait_for(self.loop.run_in_executor(None, _ask, host, int(port), packet), 3)
            except (TimeoutError, OSError, ValueError):
                continue
        return servfail(packet)

    def _readable(self, owner: str, sock: socket.socket) -> None:
        try:
            packet, peer = sock.recvfrom(4096)
        except OSError:
            return
        local = self._local(owner, packet)
        if local is not None:  # answered at once, no task
            with contextlib.suppress(OSError):
                if local:
                    sock.sendto(local, peer)
            return
        self.loop.create_task(self._send(owner, packet, sock, peer))

    async def _send(self, owner: str, packet: bytes, sock: socket.socket, peer: tuple) -> None:
        reply = await self._reply(owner, packet)
        with contextlib.suppress(OSError):
            sock.sendto(reply, peer)

    async def _tcp(self, owner: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """DNS over TCP (RFC 7766): length-prefixed messages until the client closes."""
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self._reply(owner, await reader.readexactly(size))
                if not reply:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _ask(host: str, port: int, packet: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(2.5)
        s.connect((host, port))
        s.send(packet)
        while True:
            reply = s.recv(4096)
            if reply[:2] == packet[:2]:
                return reply
