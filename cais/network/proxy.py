"""A userland proxy for what the kernel cannot NAT: ::1, and IPv6 to an IPv4-only container.

IPv4 reaches 127.0.0.1 by DNAT thanks to `route_localnet`; IPv6 has no such switch, so a reply
un-DNAT'ed back to ::1 arrives on the bridge and is dropped (loopback destinations are only
routed on lo). `table ip6 cais` therefore leaves ::1 alone, the connection lands on the socket
that reserves the host port, and this proxy accepts it and relays the bytes to the container
(TCP streams; UDP datagrams through one socket per client, as docker-proxy).
A container without IPv6 has no DNAT rule in `table ip6 cais` at all: every IPv6 connection to
its `[::]` port lands there and is relayed to its IPv4 address, as docker-proxy does. One
asyncio loop in one daemon thread serves every port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

_CHUNK = 1 << 16
UDP_IDLE = 90.0  # seconds a UDP "connection" lives without traffic (docker-proxy's UDPConnTrackTimeout)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class Proxy:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cais-proxy", daemon=True)
        self.thread.start()
        self.servers: dict[str, list[asyncio.Server]] = {}
        self.relays: dict[str, set[asyncio.Task]] = {}
        self.datagrams: dict[str, list[_UdpRelay]] = {}

    def _call(self, coro) -> object:  # noqa: ANN001 - a coroutine run on the proxy's loop
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def add(self, owner: str, sock: socket.socket, host: str, port: int) -> None:
        """Relay connections accepted on the listening TCP socket `sock` to host:port."""
        async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            relays = self.relays.setdefault(owner, set())
            relays.add(task)  # type: ignore[arg-type]
            try:
                up_r, up_w = await asyncio.open_connection(host, port)
                try:
                    await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w))
                finally:
                    up_w.close()
            except OSError:
                pass  # the container does not answer: the client sees the connection closed
            finally:
                client_w.close()
                relays.discard(task)  # type: ignore[arg-type]

        async def start() -> asyncio.Server:
            return await asyncio.start_server(relay, sock=sock)

        server = self._call(start())
        self.servers.setdefault(owner, []).append(server)  # type: ignore[arg-type]

    def add_udp(self, owner: str, sock: socket.socket, host: str, port: int) -> None:
        """Relay datagrams received on the UDP socket `sock` to host:port, and the replies back."""
        relay = _UdpRelay(self.loop, sock, (host, port))
        self.loop.call_soon_threadsafe(relay.start)
        self.datagrams.setdefault(owner, []).append(relay)

    def remove(self, owner: str) -> None:
        """Stop accepting for `owner` and cut its open relays."""
        servers = self.servers.pop(owner, [])
        datagrams = self.datagrams.pop(owner, [])

        async def stop() -> None:
            for server in servers:
                server.close()
            for task in self.relays.pop(owner, set()):
                task.cancel()
            for relay in datagrams:
                relay.stop()

        if servers or datagrams:
            self._call(stop())

    def close(self) -> None:
        for owner in {*self.servers, *self.datagrams}:
            self.remove(owner)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class _UdpRelay:
    """One published UDP port: a connected socket to the container per client, idle ones dropped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, target: tuple[str, int]) -> None:
        self.loop, self.sock, self.target = loop, sock, target
        self.clients: dict[tuple, tuple[socket.socket, float]] = {}  # client -> (upstream, last seen)
        self.sweeper: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock, self._from_client)
        self.sweeper = self.loop.call_later(UDP_IDLE / 3, self._sweep)

    def _from_client(self) -> None:
        try:
            data, client = self.sock.recvfrom(_CHUNK)
        except OSError:
            return
        entry = self.clients.get(client)
        if entry is None:
            up = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_DGRAM)
            up.setblocking(False)
            try:
                up.connect(self.target)
            except OSError:
                up.close()
                return
            self.loop.add_reader(up, self._from_container, client, up)
        else:
            up = entry[0]
        self.clients[client] = (up, self.loop.time())
        with contextlib.suppress(OSError):
            up.send(data)

    def _from_container(self, client: tuple, up: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(up.recv(_CHUNK), client)
            self.clients[client] = (up, self.loop.time())

    def _drop(self, client: tuple) -> None:
        up, _ = self.clients.pop(client)
        self.loop.remove_reader(up)
        up.close()

    def _sweep(self) -> None:
        idle = self.loop.time() - UDP_IDLE
        for client in [c for c, (_, seen) in self.clients.items() if seen < idle]:
            self._drop(client)
        self.sweeper = self.loop.call_later(UDP_IDLE / 3, self._sweep)

    def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        self.loop.remove_reader(self.sock)
        for client in list(self.clients):
            self._drop(client)
