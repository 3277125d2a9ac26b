"""The network manager: networks, endpoints, published ports and DNS of one daemon.

What the engine uses. Networks are stored in docker's JSON shape, one file each under
`<root>/networks/`; addresses under `<root>/ipam/`; containers' namespaces are bind-mounted under
`<run>/netns/`. Every kernel object is made in the namespace of the calling process (the "host"):
the bridges, host ends of veths, `table ip/ip6 cais` and `net.ipv4.ip_forward`, which is per network
namespace and enabled by `start()` as dockerd does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time

from cais.network import bridge, ipam, macvlan, netns, rtnl
from cais.network.errors import Conflict, InvalidConfig, NetworkError, NotFound
from cais.network.firewall import Bridge, Dnat, Firewall
from cais.network.later import Later
from cais.network.ports import Binding, Reservation, reserve

TYPE_CHECKING = False
if TYPE_CHECKING:  # the embedded DNS and the relays run on asyncio (~15 ms of a daemonless command's
    from cais.network.dns import DnsServer  # start): imported when first needed
    from cais.network.proxy import Proxy

log = logging.getLogger("cais.network")
DEFAULT_BRIDGE = "cais0"
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MTU_OPT = "com.docker.network.driver.mtu"
MASQUERADE_OPT = "com.docker.network.bridge.enable_ip_masquerade"
ICC_OPT = "com.docker.network.bridge.enable_icc"
HOST_BINDING_OPT = "com.docker.network.bridge.host_binding_ipv4"  # the host address of `-p PORT:PORT`
_TRUE, _FALSE = {"1", "t", "T", "TRUE", "true", "True"}, {"0", "f", "F", "FALSE", "false", "False"}  # Go's ParseBool
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _flag(options: dict, key: str) -> bool:
    """A boolean driver option (default true), spelled as Go's strconv.ParseBool takes it."""
    text = str(options.get(key, "true"))
    if text not in _TRUE | _FALSE:
        raise InvalidConfig(f"invalid value {text!r} for option {key}: expected true or false")
    return text in _TRUE


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


_INSPECT_ORDER = ("Name", "Id", "Created", "Scope", "Driver", "EnableIPv4", "EnableIPv6", "IPAM", "Internal",
                  "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels")


def _rfc3339_nano(text: str) -> str:
    """Go's RFC3339Nano: the fraction without its trailing zeros (none left: no dot)."""
    if text.endswith("Z") and "." in text:
        whole, _, fraction = text[:-1].partition(".")
        fraction = fraction.rstrip("0")
        return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"
    return text


def _record(name: str, ident: str, driver: str, **extra: object) -> dict:
    rec = {"Name": name, "Id": ident, "Created": _now(), "Scope": "local", "Driver": driver, "EnableIPv6": False,
           "IPAM": {"Driver": "default", "Options": {}, "Config": []}, "Internal": False, "Attachable": False,
           "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
           "Options": {}, "Labels": {}}
    rec.update(extra)
    return rec


def _ipam_config(pools: list[ipam.Pool]) -> list[dict]:
    """IPAM.Config of inspect."""
    return [{"Subnet": str(p.subnet), "Gateway": str(p.gateway), **({"IPRange": str(p.ip_range)} if p.ip_range else {}),
             **({"AuxiliaryAddresses": dict(p.aux)} if p.aux else {})} for p in pools]


class NetworkManager:
    def __init__(self, root: str, run_dir: str, *, upstream_dns: list[str] | None = None, mtu: int = 1500,
                 bridge_name: str = DEFAULT_BRIDGE, bridge_ipam: list[dict] | None = None,
                 bridge_ipv6: bool = False) -> None:
        """`bridge_name`: the Linux bridge of the default `bridge` network; "none": no default network.
        `bridge_ipam`, `bridge_ipv6`: its IPAM config and IPv6 (dockerd's --bip, --fixed-cidr(-v6), --ipv6)."""
        self.root = root
        self.bridge_name = bridge_name
        self.bridge_ipam = bridge_ipam or []
        self.bridge_ipv6 = bridge_ipv6
        self.netns_dir = os.path.join(run_dir, "netns")
        self.dir = os.path.join(root, "networks")
        for d in (self.dir, self.netns_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.ipam = ipam.Ipam(root)
        self.later = Later()  # stopped containers' veths deleted, then their addresses freed
        self.firewall = Firewall()
        self.mtu = mtu
        self.lock = threading.RLock()
        self.upstream_dns = upstream_dns
        self.dns: DnsServer | None = None
        self.reservations: dict[str, Reservation] = {}
        self.proxy: Proxy | None = None  # TCP relays (proxy.py), made on first use
        self.networks: dict[str, dict] = {}
        for entry in sorted(os.listdir(self.dir)):
            if entry.endswith(".json"):
                try:
                    with open(os.path.join(self.dir, entry)) as f:
                        rec = json.load(f)
                    self.networks[rec["Id"]] = rec
                except (OSError, ValueError, KeyError, TypeError) as e:  # kept on disk for a human to look at
                    log.warning("skipping the unreadable network file %s: %s", entry, e)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, alive: set[str] | None = None) -> None:
        """Built-in networks, bridges, ip_forward and the firewall table; forget dead containers.

        Safe after a crash: every step is an idempotent "ensure".
        """
        with self.lock:
            for name in ("none", "host"):
                if self._find(name) is None:
                    self._save(_record(name, secrets.token_hex(32), "null" if name == "none" else "host"))
            for rec in self._attachable() if alive is not None else []:
                for cid in [cid for cid in rec["Cais"]["Endpoints"] if cid not in alive]:
                    self._forget_endpoint(rec, cid)  # died with the daemon, or exited since its last write
            self._ensure_default_bridge()
            for rec in self._attachable():
                self.ipam.restore(rec["Id"], {ep[key]: cid for cid, ep in rec["Cais"]["Endpoints"].items()
                                              for key in ("IPAddress", "GlobalIPv6Address") if ep.get(key)})
                if rec["Driver"] == "bridge":
                    self._plumb(rec)
                else:
                    self._ensure_parent(rec)
            if self._bridges():  # else nothing to plumb: the host's networking stays untouched
                self.firewall.ensure()
            for entry in os.listdir(self.netns_dir) if alive is not None else []:
                if entry not in alive:  # the namespace of a container that died with the daemon
                    netns.remove(os.path.join(self.netns_dir, entry))

    def _ensure_default_bridge(self) -> None:
        """The `bridge` network as the daemon's settings say; re-made (same id) when they changed,
        unless containers still use it (it then keeps its old settings until they are gone)."""
        wanted = {"Bridge": self.bridge_name, "MTU": self.mtu, "IPAM": self.bridge_ipam, "IPv6": self.bridge_ipv6}
        rec = self._find("bridge")
        ident = rec["Id"] if rec is not None else secrets.token_hex(32)
        made = (rec or {}).get("Cais", {}).get("Daemon") or {  # what caisd made before it recorded this
            "Bridge": (rec or {}).get("Options", {}).get(BRIDGE_NAME_OPT), "MTU": (rec or {}).get("Cais", {}).get("MTU"),
            "IPAM": [], "IPv6": False}
        if rec is not None and made != wanted:
            if rec["Cais"]["Endpoints"]:
                log.warning("the default bridge network keeps its old settings: containers use it")
                return
            self._drop(rec)
            rec = None
        if rec is None and self.bridge_name != "none":
            rec = self._create_bridge_record("bridge", "bridge", self.bridge_ipam, internal=False, labels={},
                                             options={BRIDGE_NAME_OPT: self.bridge_name, MTU_OPT: str(self.mtu)},
                                             enable_ipv6=self.bridge_ipv6, ident=ident)
            rec["Cais"]["Daemon"] = wanted
            self._save(rec)

    def shutdown(self) -> None:
        """Daemon stop: firewall table and DNS sockets go, bridges stay (as docker's)."""
        with self.lock:
            self.later.close()
            if self.proxy is not None:
                self.proxy.close()
                self.proxy = None
            for res in self.reservations.values():
                res.close()
            self.reservations.clear()
            if self.dns is not None:
                self.dns.close()
                self.dns = None
            with contextlib.suppress(NetworkError):
                self.firewall.remove()

    # ---- networks ---------------------------------------------------------------------------
    def _save(self, rec: dict) -> None:
        path = os.path.join(self.dir, f"{rec['Id']}.json")
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(rec))  # one write (json.dump writes each piece)
        os.replace(path + ".tmp", path)
        self.networks[rec["Id"]] = rec

    def _find(self, ref: str) -> dict | None:
        for rec in self.networks.values():
            if ref in (rec["Name"], rec["Id"]):
                return rec
        matches = [r for r in self.networks.values() if ref and r["Id"].startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def get(self, ref: str) -> dict:
        rec = self._find(ref)
        if rec is None:
            raise NotFound(f"network {ref} not found")
        return rec

    def list(self) -> list[dict]:
        return list(self.networks.values())

    def _bridges(self) -> list[dict]:
        return [r for r in self.networks.values() if r["Driver"] == "bridge"]

    def _attachable(self) -> list[dict]:
        """Networks with endpoints of their own: bridge, macvlan and ipvlan ones."""
        return [r for r in self.networks.values() if r["Driver"] in ("bridge", *macvlan.DRIVERS)]

    def inspect(self, ref: str) -> dict:
        rec = self.get(ref)
        out = {k: v for k, v in rec.items() if k != "Cais"}
        out.setdefault("EnableIPv4", True)  # API 1.47+; records from before IPv6-only networks all have IPv4
        out["Created"] = _rfc3339_nano(out["Created"])
        # network.Inspect's field order, as dockerd writes it (and the docker CLI re-encodes it)
        out = {**{k: out[k] for k in _INSPECT_ORDER if k in out}, **out}
        out["Containers"] = {cid: {"Name": ep["Name"], "EndpointID": ep["EndpointID"], "MacAddress": ep["MacAddress"],
                                   "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep["IPAddress"] else "",
                                   "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                   if ep.get("GlobalIPv6Address") else ""}
                             for cid, ep in (rec.get("Cais") or {}).get("Endpoints", {}).items()}
        return out

    def create(self, name: str, *, driver: str = "bridge", ipam_config: list[dict] | None = None,
               internal: bool = False, labels: dict | None = None, options: dict | None = None,
               enable_ipv6: bool = False, attachable: bool = False, enable_ipv4: bool = True) -> dict:
        """A network; `enable_ipv4` False (with `enable_ipv6`): an IPv6-only one (API 1.47's EnableIPv4)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidConfig(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        driver = driver or "bridge"
        if driver in ("host", "null", "none"):
            raise Conflict(f'only one instance of "{driver}" network is allowed')
        if driver not in ("bridge", *macvlan.DRIVERS):
            raise InvalidConfig(f"network driver {driver!r} is not supported (bridge, macvlan or ipvlan on a "
                                "single host)")
        ipam_config = ipam_config or []
        if not isinstance(ipam_config, list) or not all(isinstance(c, dict) for c in ipam_config):
            raise InvalidConfig("invalid IPAM config: expected a list of objects")
        six = [c for c in ipam_config if ":" in str(c.get("Subnet") or "")]
        if six and not enable_ipv6:
            raise InvalidConfig("an IPv6 subnet needs IPv6 enabled on the network (--ipv6)")
        if not enable_ipv4 and not enable_ipv6:
            raise InvalidConfig("IPv4 or IPv6 must be enabled")
        if not enable_ipv4 and len(six) != len(ipam_config):
            raise InvalidConfig("an IPv4 subnet needs IPv4 enabled on the network (it is created with --ipv4=false)")
        with self.lock:
            if any(r["Name"] == name for r in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            if driver in macvlan.DRIVERS:
                return self._create_macvlan_record(name, driver, ipam_config, internal=internal, labels=labels or {},
                                                   options=options or {}, attachable=attachable,
                                                   enable_ipv6=enable_ipv6, enable_ipv4=enable_ipv4)
            rec = self._create_bridge_record(name, driver, ipam_config, internal=internal,
                                             labels=labels or {}, options=options or {}, attachable=attachable,
                                             enable_ipv6=enable_ipv6, enable_ipv4=enable_ipv4)
            self.firewall.ensure()
            return rec

    def _create_bridge_record(self, name: str, driver: str, ipam_config: list[dict], *, internal: bool,
                              labels: dict, options: dict, attachable: bool = False,
                              enable_ipv6: bool = False, ident: str = "", enable_ipv4: bool = True) -> dict:
        if not all(isinstance(c, dict) for c in ipam_config):
            raise InvalidConfig("invalid IPAM config: expected a list of objects")
        ident = ident or secrets.token_hex(32)
        mtu = self._mtu(options)
        for key in (MASQUERADE_OPT, ICC_OPT):
            _flag(options, key)
        if options.get(HOST_BINDING_OPT):
            ipam.parse_address(str(options[HOST_BINDING_OPT]), f"address in {HOST_BINDING_OPT}")
        pools = self._pools(ipam_config, enable_ipv6, enable_ipv4)
        bridge_name = options.get(BRIDGE_NAME_OPT) or f"cais-{ident[:10]}"
        if len(bridge_name) > 15 or any(c in bridge_name for c in "/ \t\n:"):
            raise InvalidConfig(f"invalid bridge name {bridge_name!r}")
        if any(r.get("Cais", {}).get("Bridge") == bridge_name for r in self._bridges()):
            raise Conflict(f"bridge {bridge_name} is already used by another network")
        rec = _record(name, ident, driver, Internal=bool(internal), Attachable=bool(attachable),
                      EnableIPv6=bool(enable_ipv6), EnableIPv4=bool(enable_ipv4),
                      Labels=dict(labels), Options={k: str(v) for k, v in options.items()},
                      IPAM={"Driver": "default", "Options": {}, "Config": _ipam_config(pools)})
        rec["Cais"] = {"Bridge": bridge_name, "MTU": mtu, "Endpoints": {}}
        self.ipam.add(ident, pools)
        try:
            self._plumb(rec)
            self._save(rec)
        except BaseException:
            self.firewall.rules.bridges.pop(bridge_name, None)
            bridge.remove_link(bridge_name)
            self.ipam.drop(ident)
            raise
        return rec

    def _pools(self, ipam_config: list[dict], enable_ipv6: bool, enable_ipv4: bool = True) -> list[ipam.Pool]:
        """The pools of a new network: those asked for (checked against every other network's), plus
        an IPv4 one with `enable_ipv4`, and an IPv6 one with `enable_ipv6`, from the default pools
        when not given."""
        if any(not c.get("Subnet") for c in ipam_config):
            raise InvalidConfig("an IPAM config needs a subnet")
        pools = [ipam.make_pool(c["Subnet"], c.get("Gateway") or "", c.get("IPRange") or "",
                                c.get("AuxiliaryAddresses")) for c in ipam_config]
        taken = [ipaddress.ip_network(c["Subnet"]) for r in self._attachable() for c in r["IPAM"]["Config"]]
        for p in pools:
            for t in taken:
                if t.version == p.subnet.version and t.overlaps(p.subnet):  # type: ignore[arg-type]
                    raise Conflict(f"invalid pool request: Pool overlaps with other one on this address space "
                                   f"({p.subnet} overlaps {t})")
        if len({p.subnet for p in pools}) != len(pools) or any(
                a.subnet.overlaps(b.subnet) for i, a in enumerate(pools) for b in pools[i + 1:]  # type: ignore[arg-type]
                if a.subnet.version == b.subnet.version):
            raise Conflict("invalid pool request: the subnets given overlap each other")
        need4 = enable_ipv4 and not any(p.subnet.version == 4 for p in pools)
        need6 = enable_ipv6 and not any(p.subnet.version == 6 for p in pools)
        if need4 or need6:  # from the default pools, skipping what is routed here already
            taken += netns.run_in(None, bridge.host_routes)
        if need4:
            pools.insert(0, ipam.make_pool(str(ipam.free_subnet(taken))))
        if need6:
            pools.append(ipam.make_pool(str(ipam.free_subnet(taken, [ipam.ula_pool(self.root)]))))
        return pools

    def _create_macvlan_record(self, name: str, driver: str, ipam_config: list[dict], *, internal: bool,
                               labels: dict, options: dict, attachable: bool, enable_ipv6: bool,
                               enable_ipv4: bool = True) -> dict:
        """A macvlan or ipvlan network (macvlan.py): its parent made if it is an 802.1q sub-interface
        or the network's own link, nothing else on the host."""
        ident = secrets.token_hex(32)
        config = macvlan.parse(driver, options, ident)
        mtu = self._mtu(options) if options.get(MTU_OPT) else None
        for other in self._attachable():
            if other["Driver"] == driver and other["Cais"].get("Parent") == config.parent:
                raise Conflict(f"network {other['Name']} is already using parent interface {config.parent}")
        pools = self._pools(ipam_config, enable_ipv6, enable_ipv4)
        rec = _record(name, ident, driver, Internal=bool(internal), Attachable=bool(attachable),
                      EnableIPv6=bool(enable_ipv6), EnableIPv4=bool(enable_ipv4), Labels=dict(labels),
                      Options={k: str(v) for k, v in options.items()},
                      IPAM={"Driver": "default", "Options": {}, "Config": _ipam_config(pools)})
        rec["Cais"] = {"Parent": config.parent, "Mode": config.mode, "OwnParent": config.own_parent, "MTU": mtu,
                       "Made": "", "Endpoints": {}}
        rec["Cais"]["Made"] = netns.run_in(None, lambda: macvlan.host_ensure_parent(config))
        try:
            self.ipam.add(ident, pools)
            self._save(rec)
        except BaseException:
            self._remove_parent(rec)
            self.ipam.drop(ident)
            raise
        return rec

    @staticmethod
    def _macvlan_config(rec: dict) -> macvlan.Config:
        cais = rec["Cais"]
        return macvlan.Config(rec["Driver"], cais["Parent"], cais["Mode"], cais["OwnParent"])

    def _ensure_parent(self, rec: dict) -> None:
        """After a (re)start: the parent made for `rec` is made again if it went (a reboot)."""
        if rec["Cais"]["Made"]:
            try:
                netns.run_in(None, lambda: macvlan.host_ensure_parent(self._macvlan_config(rec)))
            except NetworkError as e:
                log.warning("network %s: %s", rec["Name"], e)

    def _remove_parent(self, rec: dict) -> None:
        """The parent goes if it was made for `rec` (dockerd deletes the 802.1q links it made), unless
        a network of the other driver uses it too."""
        parent = rec["Cais"]["Parent"]
        shared = any(r["Id"] != rec["Id"] and r["Cais"].get("Parent") == parent for r in self._attachable())
        if rec["Cais"]["Made"] and not shared:
            bridge.remove_link(parent)

    @staticmethod
    def _mtu(options: dict) -> int:
        text = str(options.get(MTU_OPT) or 1500)
        if not text.isdigit() or not 68 <= int(text) <= 65535:
            raise InvalidConfig(f"invalid MTU {text!r}: expected 68-65535")
        return int(text)

    def _plumb(self, rec: dict) -> None:
        """The bridge of `rec` with its gateway address, route_localnet, ip_forward, its firewall entry."""
        name, cais = rec["Cais"]["Bridge"], rec["Cais"]
        pools = self.ipam.pools(rec["Id"])
        v4 = next((p for p in pools if p.subnet.version == 4), None)
        v6 = next((p for p in pools if p.subnet.version == 6), None)

        def body() -> None:
            netns.set_sysctl("net.ipv4.ip_forward", "1")
            if v6 is not None:
                netns.set_sysctl("net.ipv6.conf.all.forwarding", "1")
            bridge.host_ensure_bridge(name, [(str(p.gateway), p.subnet.prefixlen) for p in pools], cais["MTU"])
            netns.set_sysctl(f"net.ipv4.conf.{name}.route_localnet", "1")

        netns.run_in(None, body)
        options = rec.get("Options") or {}
        self.firewall.rules.bridges[name] = Bridge(name, str(v4.subnet) if v4 else "", bool(rec["Internal"]),
                                                   str(v6.subnet) if v6 else "", masquerade=_flag(options, MASQUERADE_OPT),
                                                   icc=_flag(options, ICC_OPT))

    def host_gateway(self) -> str:
        """What `--add-host NAME:host-gateway` stands for: the default bridge's IPv4 gateway (docker's
        default `host-gateway-ip`); "" without a default bridge."""
        rec = self._find("bridge")
        if rec is None or rec["Driver"] != "bridge":
            return ""
        return next((c["Gateway"] for c in rec["IPAM"]["Config"] if ":" not in c["Subnet"]), "")

    def remove(self, ref: str) -> None:
        with self.lock:
            self.later.settle()  # the veths of stopped containers out of its bridge, addresses freed
            rec = self.get(ref)
            if rec["Name"] in ("bridge", "host", "none"):
                raise Conflict(f"{rec['Name']} is a pre-defined network and cannot be removed")
            if rec["Cais"]["Endpoints"]:
                raise Conflict(f"error while removing network: network {rec['Name']} id {rec['Id']} has active "
                               f"endpoints ({', '.join(e['Name'] for e in rec['Cais']['Endpoints'].values())})")
            self._drop(rec)

    def _drop(self, rec: dict) -> None:
        """A network without endpoints goes: its bridge and firewall entry (or the parent made for
        it), addresses and record."""
        if rec["Driver"] == "bridge":
            name = rec["Cais"]["Bridge"]
            self.firewall.drop_bridge(name)
            bridge.remove_link(name)
        else:
            self._remove_parent(rec)
        self.ipam.drop(rec["Id"])
        os.unlink(os.path.join(self.dir, f"{rec['Id']}.json"))
        del self.networks[rec["Id"]]

    # ---- container namespaces ---------------------------------------------------------------
    def sandbox_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def create_sandbox(self, cid: str, source: str | None = None) -> str:
        """A fresh network namespace for `cid` with the loopback up (what --network none gets);
        `source`: the one the runtime made for the container (/proc/PID/ns/net), bound instead."""
        path = self.sandbox_path(cid)
        if os.path.lexists(path):  # left over by a crash
            netns.remove(path)
        netns.create(path, source)
        try:
            netns.loopback_up(path)
        except BaseException:
            netns.remove(path)
            raise
        return path

    def remove_sandbox(self, cid: str) -> None:
        netns.remove(self.sandbox_path(cid))

    # ---- endpoints --------------------------------------------------------------------------
    def attach(self, cid: str, ref: str, netns_path: str, *, name: str, aliases: list[str] | None = None,
               ip: str = "", ip6: str = "", dns: list[str] | None = None, mac: str = "",
               links: list[str] | None = None) -> dict:
        """Plug container `cid` (namespace on `netns_path`) into network `ref`: its EndpointSettings.

        `dns`: the container's --dns servers, where the embedded DNS forwards its other questions;
        `mac`: its --mac-address (default: docker's 02:42 followed by the IPv4 address);
        `links`: its CONTAINER[:ALIAS] links on this network, answered by the embedded DNS for it only.
        """
        with self.lock:
            self.later.settle(cid)  # a restarted container's previous veths gone, addresses back
            rec = self.get(ref)
            if rec["Driver"] not in ("bridge", *macvlan.DRIVERS):
                raise Conflict(f"container cannot be connected to the {rec['Name']} network")
            if cid in rec["Cais"]["Endpoints"]:
                raise Conflict(f"endpoint with name {name} already exists in network {rec['Name']}")
            if (ip or ip6) and rec["Name"] == "bridge":
                raise InvalidConfig("user specified IP address is supported on user defined networks only")
            if aliases and rec["Name"] == "bridge":
                raise InvalidConfig("network-scoped aliases are supported only for user-defined networks")
            if ip6 and not rec.get("EnableIPv6"):
                raise InvalidConfig(f"network {rec['Name']} has no IPv6 subnet (it was created without --ipv6)")
            four = rec.get("EnableIPv4", True)
            if ip and not four:
                raise InvalidConfig(f"network {rec['Name']} has IPv4 disabled: it has no IPv4 address to give")
            mac = bridge.parse_mac(mac) if mac else ""
            wanted = ipam.parse_address(ip, "IP address") if ip else None
            wanted6 = ipam.parse_address(ip6, "IPv6 address") if ip6 else None
            got = self.ipam.allocate(rec["Id"], cid, wanted) if four else None
            if got is None and four:
                raise NetworkError(f"network {rec['Name']} has no IPv4 pool")
            try:
                six = self.ipam.allocate(rec["Id"], cid, wanted6, version=6) if rec.get("EnableIPv6") else None
            except BaseException:
                self.ipam.release(rec["Id"], cid)
                raise
            assigned = [a for a in (got, six) if a is not None]  # (address, pool): IPv4 first
            addresses = [(str(a), p.subnet.prefixlen) for a, p in assigned]
            lower = self._macvlan_config(rec) if rec["Driver"] != "bridge" else None
            routed = lower is not None and lower.routed  # ipvlan l3: a default route, no gateway
            internal = rec["Internal"] or (lower is not None and lower.own_parent)  # dockerd: no parent, internal
            gateways = [] if internal or routed else [str(p.gateway) for _, p in assigned]
            host_veth = "caisv" + hashlib.sha256(f"{rec['Id']}/{cid}".encode()).hexdigest()[:10] if not lower else ""
            # from the IPv4 address as docker; an IPv6-only endpoint's from the IPv6 address's last 4 bytes
            mac = "" if lower is not None and lower.driver == "ipvlan" else (mac or bridge.mac_for(assigned[0][0]))
            mtu = rec["Cais"]["MTU"]
            ifname = ""
            try:
                with rtnl.session(netns_path) as ctr:
                    ifname = bridge.container_free_ifname(ctr)
                    if lower is None:
                        with rtnl.session() as host:
                            host.delete(host_veth)  # left over by a crash
                            bridge.host_add_veth(host, rec["Cais"]["Bridge"], host_veth, ifname, netns_path, mtu, mac)
                    else:
                        netns.run_in(None, lambda: macvlan.host_add_child(lower, ifname, netns_path, mtu))
                    bridge.container_configure(ctr, ifname, addresses, mac if lower is not None else "", gateways,
                                               device_routes=routed and not internal)
            except BaseException:
                with contextlib.suppress(OSError):
                    if lower is None:
                        bridge.remove_link(host_veth)
                    elif ifname:
                        with rtnl.session(netns_path) as ctr:
                            ctr.delete(ifname)
                self.ipam.release(rec["Id"], cid)
                raise
            ipam_config = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}
            endpoint = {"IPAMConfig": ipam_config or None, "Links": list(links or []) or None,
                        "Aliases": list(aliases or []) or None, "MacAddress": mac, "NetworkID": rec["Id"],
                        "EndpointID": secrets.token_hex(32), "Gateway": str(got[1].gateway) if got and not routed else "",
                        "IPAddress": str(got[0]) if got else "", "IPPrefixLen": got[1].subnet.prefixlen if got else 0,
                        "IPv6Gateway": str(six[1].gateway) if six and not routed else "",
                        "GlobalIPv6Address": str(six[0]) if six else "",
                        "GlobalIPv6PrefixLen": six[1].subnet.prefixlen if six else 0, "DriverOpts": None,
                        "DNSNames": list(dict.fromkeys([name, *(aliases or []), cid[:12]]))
                        if rec["Name"] != "bridge" else None}
            rec["Cais"]["Endpoints"][cid] = {**endpoint, "Name": name, "HostVeth": host_veth, "Ifname": ifname,
                                             "Netns": netns_path}
            self._save(rec)
            if rec["Name"] != "bridge":
                self._serve_dns(cid, netns_path, dns)
            return endpoint

    def endpoint(self, cid: str, ref: str) -> dict | None:
        return self.get(ref).get("Cais", {}).get("Endpoints", {}).get(cid)

    def detach(self, cid: str, ref: str) -> None:
        with self.lock:
            rec = self.get(ref)
            if cid not in rec.get("Cais", {}).get("Endpoints", {}):
                raise NotFound(f"container {cid[:12]} is not connected to network {rec['Name']}")
            self._forget_endpoint(rec, cid)
            if self.dns is not None and not any(cid in r["Cais"]["Endpoints"] for r in self._attachable()
                                                if r["Name"] != "bridge"):
                self.dns.remove(cid)

    def _forget_endpoint(self, rec: dict, cid: str, *, exited: bool = False) -> None:
        """The endpoint of `cid` goes from `rec`, its link and addresses with it.

        `exited` (the container stopped): a bridge endpoint's veth is deleted and its addresses
        freed by self.later, after this returns; the record is not written either: a daemon that
        dies before its next write forgets the endpoints of dead containers at start().
        """
        ep, network_id = rec["Cais"]["Endpoints"].pop(cid), rec["Id"]
        if ep.get("HostVeth") and exited:
            self.later.submit(cid, lambda: (bridge.remove_link(ep["HostVeth"]), self.ipam.release(network_id, cid)))
            return
        if ep.get("HostVeth"):
            bridge.remove_link(ep["HostVeth"])  # its peer goes with it
        elif os.path.exists(ep["Netns"]):  # macvlan/ipvlan: the link is in the container's namespace
            with contextlib.suppress(OSError), rtnl.session(ep["Netns"]) as ctr:
                ctr.delete(ep["Ifname"])
        self.ipam.release(network_id, cid)
        if not exited:
            self._save(rec)

    def networks_of(self, cid: str) -> list[dict]:
        return [r for r in self._attachable() if cid in r["Cais"]["Endpoints"]]

    def release(self, cid: str) -> None:
        """Container stopped: its endpoints, ports, DNS socket and namespace go; its veths are
        deleted (and then its addresses freed) once this returns, see later.py."""
        with self.lock:
            self.unpublish(cid)
            for rec in self.networks_of(cid):
                self._forget_endpoint(rec, cid, exited=True)
            if self.dns is not None:
                self.dns.remove(cid)
            self.remove_sandbox(cid)

    # ---- DNS --------------------------------------------------------------------------------
    def _serve_dns(self, cid: str, netns_path: str, dns: list[str] | None = None) -> None:
        if self.dns is None:
            from cais.network.dns import DnsServer
            from cais.network.etcfiles import parse_resolv

            upstreams = self.upstream_dns
            if upstreams is None:
                try:
                    with open("/etc/resolv.conf") as f:
                        upstreams = parse_resolv(f.read())[0]
                except OSError:
                    upstreams = []
            self.dns = DnsServer(self.resolve, upstreams, self.reverse)
        self.dns.add(cid, netns_path, dns)

    def restore_dns(self, cid: str, dns: list[str] | None = None) -> None:
        """After a daemon restart: the DNS socket of a running container on a user-defined network."""
        for rec in self.networks_of(cid):
            if rec["Name"] != "bridge":
                self._serve_dns(cid, rec["Cais"]["Endpoints"][cid]["Netns"], dns)
                return

    def resolve(self, asking: str, name: str) -> list[str] | None:
        """Addresses of `name` (container name, alias or short id, optionally `.NETWORK`) on the
        networks `asking` is on."""
        found: list[str] = []
        for rec in self.networks_of(asking):
            if rec["Name"] == "bridge":
                continue
            suffix = "." + rec["Name"].lower()
            wanted = name[:-len(suffix)] if name.endswith(suffix) else name
            wanted = _linked(rec["Cais"]["Endpoints"].get(asking, {}).get("Links"), wanted)
            for cid, ep in rec["Cais"]["Endpoints"].items():
                names = {ep["Name"].lower(), *(a.lower() for a in ep.get("Aliases") or [])}
                if wanted in names or (len(wanted) >= 12 and cid.startswith(wanted)):
                    found += [a for a in (ep["IPAddress"], ep.get("GlobalIPv6Address")) if a]
        return found or None

    def reverse(self, asking: str, address: str) -> str | None:
        """`NAME.NETWORK` of the container that has `address` on a network `asking` is on."""
        for rec in self.networks_of(asking):
            if rec["Name"] == "bridge":
                continue
            for ep in rec["Cais"]["Endpoints"].values():
                if address in (ep["IPAddress"], ep.get("GlobalIPv6Address")):
                    return f"{ep['Name']}.{rec['Name']}"
        return None

    # ---- published ports --------------------------------------------------------------------
    def publish(self, cid: str, wanted: list[Binding], container_ip: str, container_ip6: str = "") -> list[Binding]:
        """Reserve the host ports of `wanted` and DNAT them to the container: the bindings made.

        A port published on every address is published on both families, as docker does (see
        ports.reserve): IPv6 host addresses are DNAT'ed to `container_ip6`; traffic to ::1, or to
        host addresses of a family the container lacks (IPv6 to one without IPv6, IPv4 to an IPv6-only
        one), is relayed by the proxy (proxy.py).
        """
        with self.lock:
            self.unpublish(cid)
            if not wanted:
                return []
            primary = next((r for r in self.networks_of(cid)
                            if r["Cais"]["Endpoints"][cid]["IPAddress"] == container_ip), None)
            default_ip = str(((primary or {}).get("Options") or {}).get(HOST_BINDING_OPT) or "")
            if default_ip:
                wanted = [b if b.host_ip else dataclasses.replace(b, host_ip=default_ip) for b in wanted]
            res = reserve(wanted)
            try:
                targets = [container_ip6 if ":" in b.host_ip else container_ip for b in res.bound]
                self.firewall.set_dnat(cid, [Dnat(b.proto, b.host_ip, b.host_port, target, b.container_port)
                                             for b, target in zip(res.bound, targets, strict=True) if target])
                for b, sock, target in zip(res.bound, res.sockets, targets, strict=True):
                    # what no DNAT reaches: ::1, a family the container lacks (IPv6 to an IPv4-only one,
                    # IPv4 to an IPv6-only one)
                    if not target or b.host_ip in ("::", "::1"):
                        if self.proxy is None:
                            from cais.network.proxy import Proxy
                            self.proxy = Proxy()
                        relay = self.proxy.add if b.proto == "tcp" else self.proxy.add_udp
                        relay(cid, sock, container_ip6 or container_ip, b.container_port)
            except BaseException:
                if self.proxy is not None:
                    self.proxy.remove(cid)
                res.close()
                with contextlib.suppress(NetworkError):
                    self.firewall.drop_dnat(cid)
                raise
            self.reservations[cid] = res
            return list(res.bound)

    def unpublish(self, cid: str) -> None:
        if self.proxy is not None:
            self.proxy.remove(cid)
        res = self.reservations.pop(cid, None)
        if res is not None:
            res.close()
        self.firewall.drop_dnat(cid)


def _linked(links: list[str] | None, name: str) -> str:
    """The container a `--link NAME:ALIAS` of the asking endpoint makes `name` stand for (libnetwork's
    per-endpoint aliases: only the linking container sees them), else `name`."""
    for link in links or []:
        target, _, alias = link.partition(":")
        target = target.strip("/").lower()
        if name == (alias.rpartition("/")[2].lower() or target):
            return target
    return name
