"""nftables rules of the bridge driver, in tables that cais owns: `table ip cais` and `ip6 cais`.

The whole table is rendered from the current state and swapped in one `nft -f -` transaction
(add, delete, re-add), so "ensure" is idempotent: after a crash or a restart the daemon applies
its state again and never duplicates a rule. Nothing outside this table is ever touched; on
shutdown the table is deleted.

Both tables have the same chains, each for its family. Published ports are DNAT'ed in
PREROUTING (traffic from outside and from containers, hairpin included) and in OUTPUT (traffic
generated on the host, 127.0.0.1 included). Reaching 127.0.0.1 needs `route_localnet` on the
bridge (set by the driver) and a masquerade of 127.0.0.0/8 towards the bridge, the same choice
as dockerd with `--userland-proxy=false`. IPv6 has no `route_localnet`: ::1 is left to the
loopback proxy (proxy.py).
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field

from cais.network.errors import NetworkError

TABLE = "cais"


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: str
    internal: bool = False
    subnet6: str = ""  # an IPv6 subnet: handled by `table ip6 cais` as `subnet` by `table ip cais`
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade
    icc: bool = True  # com.docker.network.bridge.enable_icc: containers of the bridge may talk


@dataclass(frozen=True)
class Dnat:
    proto: str  # tcp | udp
    host_ip: str  # "", 0.0.0.0 or ::: every local address of the family of container_ip
    host_port: int
    container_ip: str
    container_port: int


@dataclass
class Rules:
    bridges: dict[str, Bridge] = field(default_factory=dict)
    dnat: dict[str, list[Dnat]] = field(default_factory=dict)  # owner (container id) -> rules


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def _forward(bridges: list[Bridge]) -> list[str]:
    """Isolation rules by interface: the same in the ip and ip6 tables."""
    out = []
    for b in bridges:
        if b.internal:
            out += [f"iifname {_q(b.name)} oifname != {_q(b.name)} drop",
                    f"oifname {_q(b.name)} iifname != {_q(b.name)} drop"]
    out.append("ct status dnat accept")
    # icc=false: bridged traffic between two ports reaches this hook only through br_netfilter
    out += [f"iifname {_q(b.name)} oifname {_q(b.name)} drop" for b in bridges if not b.icc]
    for b in bridges:
        others = [o.name for o in bridges if o.name != b.name]
        if others:
            out.append(f"iifname {_q(b.name)} oifname {{ {', '.join(_q(o) for o in others)} }} drop")
    return out


def render(rules: Rules, family: str = "ip") -> str:
    """`table ip cais` (family "ip") or `table ip6 cais` ("ip6"): both have the same chains."""
    six = family == "ip6"
    published, post = [], []
    bridges = sorted(rules.bridges.values(), key=lambda b: b.name)
    for b in bridges:
        subnet = b.subnet6 if six else b.subnet
        if b.internal or not subnet:
            continue
        post += [*([f"{family} saddr {subnet} oifname != {_q(b.name)} masquerade"] if b.masquerade else []),
                 *([] if six else [f"oifname {_q(b.name)} ip saddr 127.0.0.0/8 masquerade"]),
                 f"oifname {_q(b.name)} {family} saddr {subnet} ct status dnat masquerade"]
    for owner in sorted(rules.dnat):
        for d in rules.dnat[owner]:
            if (":" in d.container_ip) != six:
                continue
            match = f"{family} daddr {d.host_ip} " if d.host_ip not in ("", "0.0.0.0", "::") else ""
            target = f"[{d.container_ip}]" if six else d.container_ip
            published.append(f"{match}{d.proto} dport {d.host_port} dnat to {target}:{d.container_port}")
    body = [
        f"table {family} {TABLE} {{",
        "  chain published {", *[f"    {r}" for r in published], "  }",
        "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump published", "  }",
        "  chain output {", "    type nat hook output priority -100; policy accept;",
        f"    fib daddr type local {'ip6 daddr != ::1 ' if six else ''}jump published", "  }",
        "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
        *[f"    {r}" for r in post], "  }",
        "  chain forward {", "    type filter hook forward priority filter; policy accept;",
        *[f"    {r}" for r in _forward(bridges)], "  }",
        "}",
    ]
    return "\n".join(body) + "\n"


def _nft(script: str) -> None:
    try:
        done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError("nft not found: install nftables for bridge networks") from None
    if done.returncode != 0:
        raise NetworkError(f"nftables: {done.stderr.strip().splitlines()[0] if done.stderr.strip() else 'failed'}")


class Firewall:
    """The state of table ip cais; every change re-applies the whole table atomically."""

    def __init__(self) -> None:
        self.rules = Rules()
        self.lock = threading.Lock()
        self.applied = False  # whether this daemon ever made the table (else shutdown leaves nft alone)

    def ensure(self) -> None:
        with self.lock:
            _nft(f"table ip {TABLE}\ndelete table ip {TABLE}\ntable ip6 {TABLE}\ndelete table ip6 {TABLE}\n"
                 + render(self.rules) + render(self.rules, "ip6"))
            self.applied = True

    def drop_bridge(self, name: str) -> None:
        if self.rules.bridges.pop(name, None) is not None:
            self.ensure()

    def set_dnat(self, owner: str, rules: list[Dnat]) -> None:
        if rules:
            self.rules.dnat[owner] = rules
        else:
            self.rules.dnat.pop(owner, None)
        self.ensure()

    def drop_dnat(self, owner: str) -> None:
        if self.rules.dnat.pop(owner, None) is not None:
            self.ensure()

    def remove(self) -> None:
        """Delete the table (daemon shutdown)."""
        with self.lock:
            if self.applied:
                _nft(f"table ip {TABLE}\ndelete table ip {TABLE}\ntable ip6 {TABLE}\ndelete table ip6 {TABLE}\n")
                self.applied = False
