"""IP address management: subnets, gateways, ranges and per-container addresses.

The pools of a network (subnet, gateway, range, auxiliary addresses) are one JSON file under
`<root>/ipam/`, written durably when the network is made. Which container holds which address
lives in memory only: the network records keep every endpoint's addresses, and the manager's
start() restores the allocations from the endpoints of the containers still running (see
restore()), so after a daemon crash an address held by a running container is never given again,
and a container's start or exit costs no write of its own here.
Addresses are `ipaddress` objects, so IPv6 pools take the same path as IPv4 ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import json
import os
import threading
from dataclasses import dataclass, field

from cais.network.errors import Conflict, InvalidConfig, NotFound

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Docker's default address pools: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/20 slices.
DEFAULT_POOLS: list[tuple[str, int, int]] = [("172.16.0.0/12", 16, 1), ("192.168.0.0/16", 20, 0)]


def parse_subnet(text: str) -> Network:
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidConfig(f"invalid subnet {text!r}: expected an address/prefix such as 172.20.0.0/16") from None
        raise InvalidConfig(f"invalid subnet {text}: it should be {loose}") from None
    if net.num_addresses < 4:
        raise InvalidConfig(f"invalid subnet {text}: too small for a gateway and a container")
    return net


def parse_address(text: str, what: str = "address") -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidConfig(f"invalid {what} {text!r}") from None


@dataclass
class Pool:
    """The addresses of one subnet: gateway, optional range for dynamic addresses, allocations."""

    subnet: Network
    gateway: Address
    ip_range: Network | None = None
    allocated: dict[str, str] = field(default_factory=dict)  # address -> owner (container id)
    aux: dict[str, str] = field(default_factory=dict)  # --aux-address: name -> address, never given out

    def to_json(self) -> dict:
        return {"Subnet": str(self.subnet), "Gateway": str(self.gateway),
                "IPRange": str(self.ip_range) if self.ip_range else "", "Aux": self.aux}

    @classmethod
    def from_json(cls, d: dict) -> Pool:
        """A pool from its file; an "Allocated" there (written before allocations moved to memory)
        is superseded by the manager's restore()."""
        return cls(ipaddress.ip_network(d["Subnet"]), ipaddress.ip_address(d["Gateway"]),
                   ipaddress.ip_network(d["IPRange"]) if d.get("IPRange") else None, aux=dict(d.get("Aux") or {}))

    def allocate(self, owner: str, wanted: Address | None = None) -> Address:
        if wanted is not None:
            if wanted not in self.subnet:
                raise InvalidConfig(f"address {wanted} is not in subnet {self.subnet}")
            if wanted in (self.gateway, self.subnet.network_address) or str(wanted) in self.aux.values() or (
                    self.subnet.version == 4 and wanted == self.subnet.broadcast_address):
                raise InvalidConfig(f"address {wanted} is reserved in subnet {self.subnet}")
            holder = self.allocated.get(str(wanted))
            if holder is not None and holder != owner:
                raise Conflict(f"address {wanted} is already in use on this network")
            self.allocated[str(wanted)] = owner
            return wanted
        space = self.ip_range or self.subnet  # a range's own first and last addresses are usable (docker's)
        reserved = {str(self.gateway), str(self.subnet.network_address), *self.aux.values(), *self.allocated}
        if self.subnet.version == 4:
            reserved.add(str(self.subnet.broadcast_address))
        for addr in space:
            if str(addr) not in reserved:
                self.allocated[str(addr)] = owner
                return addr
        raise Conflict(f"no available IPv{space.version} address in {space}")

    def release(self, owner: str) -> None:
        for addr in [a for a, o in self.allocated.items() if o == owner]:
            del self.allocated[addr]


def make_pool(subnet: str, gateway: str = "", ip_range: str = "", aux: dict | None = None) -> Pool:
    net = parse_subnet(subnet)
    if gateway:
        gw = parse_address(gateway, "gateway")
        if gw not in net:
            raise InvalidConfig(f"gateway {gw} is not in subnet {net}")
    else:
        gw = next(net.hosts())
    rng = None
    if ip_range:
        rng = parse_subnet(ip_range)
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidConfig(f"ip-range {rng} is not inside subnet {net}")
    if not isinstance(aux or {}, dict):
        raise InvalidConfig("invalid AuxiliaryAddresses: expected an object of name: address")
    reserved = {}
    for name, text in (aux or {}).items():
        addr = parse_address(str(text), "auxiliary address")
        if addr not in net or addr == gw:
            raise InvalidConfig(f"auxiliary address {name}={addr} is not a free address of subnet {net}")
        reserved[str(name)] = str(addr)
    return Pool(net, gw, rng, aux=reserved)


def default_bridge_config(bip: str = "", fixed_cidr: str = "", fixed_cidr_v6: str = "") -> list[dict]:
    """The IPAM config of the default `bridge` network from dockerd's --bip, --fixed-cidr and
    --fixed-cidr-v6 (empty: a subnet from the default pools, no IPv6)."""
    config: list[dict] = []
    try:
        if bip:
            iface = ipaddress.IPv4Interface(bip)
            config.append({"Subnet": str(iface.network), "Gateway": str(iface.ip)})
        if fixed_cidr:
            rng = ipaddress.IPv4Network(fixed_cidr, strict=False)
            if config and not rng.subnet_of(ipaddress.IPv4Network(config[0]["Subnet"])):
                raise InvalidConfig(f"fixed-cidr {rng} is not inside the bridge subnet {config[0]['Subnet']} (--bip)")
            config = config or [{"Subnet": str(rng)}]
            config[0]["IPRange"] = str(rng)
        if fixed_cidr_v6:
            config.append({"Subnet": str(ipaddress.IPv6Network(fixed_cidr_v6, strict=False))})
    except ValueError as e:
        raise InvalidConfig(f"invalid default bridge address: {e}") from None
    return config


def ula_pool(seed: str) -> tuple[str, int, int]:
    """The default IPv6 pool (docker 27's choice): /64s of a unique local /48, fdXX:XXXX:XXXX::/48
    (RFC 4193), its 40 bits derived from `seed` so that one daemon always uses the same one."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"fd{h[:2]}:{h[2:6]}:{h[6:10]}::/48", 64, 0


def free_subnet(taken: list[Network], pools: list[tuple[str, int, int]] = DEFAULT_POOLS) -> Network:
    """The first default-pool subnet overlapping nothing in `taken` (networks and host routes).

    A pool is (base, prefix length of its subnets, how many of its first subnets to skip).
    """
    for base, size, skip in pools:
        for candidate in itertools.islice(ipaddress.ip_network(base).subnets(new_prefix=size), skip, None):
            if not any(candidate.version == t.version and candidate.overlaps(t) for t in taken):  # type: ignore[arg-type]
                return candidate
    raise Conflict("all predefined address pools have been fully subnetted")


class Ipam:
    """Pools of every network, one file each under `root`; allocations in memory."""

    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "ipam")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self.loaded: dict[str, list[Pool]] = {}  # network id -> its pools, read at first use

    def _file(self, network_id: str) -> str:
        return os.path.join(self.root, f"{network_id}.json")

    def pools(self, network_id: str) -> list[Pool]:
        with self.lock:
            pools = self.loaded.get(network_id)
            if pools is None:
                try:
                    with open(self._file(network_id)) as f:
                        pools = [Pool.from_json(p) for p in json.load(f)]
                except FileNotFoundError:
                    raise NotFound(f"no address pool for network {network_id}") from None
                self.loaded[network_id] = pools
            return pools

    def add(self, network_id: str, pools: list[Pool]) -> None:
        with self.lock:
            tmp = self._file(network_id) + ".tmp"
            with open(tmp, "w") as f:
                json.dump([p.to_json() for p in pools], f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(network_id))
            self.loaded[network_id] = pools

    def drop(self, network_id: str) -> None:
        with self.lock:
            self.loaded.pop(network_id, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(network_id))

    def allocate(self, network_id: str, owner: str, wanted: Address | None = None,
                 version: int = 4) -> tuple[Address, Pool] | None:
        """An address for `owner` from the network's IPv`version` pool; None: no such pool."""
        with self.lock:
            for pool in self.pools(network_id):
                if pool.subnet.version == version and (wanted is None or wanted in pool.subnet):
                    return pool.allocate(owner, wanted), pool
            if wanted is not None:
                raise InvalidConfig(f"address {wanted} is not in any subnet of the network")
            return None

    def release(self, network_id: str, owner: str) -> None:
        with self.lock:
            try:
                pools = self.pools(network_id)
            except NotFound:
                return
            for pool in pools:
                pool.release(owner)

    def restore(self, network_id: str, owners: dict[str, str]) -> None:
        """At start: the allocations are `owners` (address -> owner), the addresses of the
        endpoints of the containers still running."""
        with self.lock:
            for pool in self.pools(network_id):
                pool.allocated = {a: o for a, o in owners.items() if ipaddress.ip_address(a) in pool.subnet}
