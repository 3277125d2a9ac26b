"""The engine's networks: cais.network's manager for the API, and each container's network.

At create a container's network mode, endpoints (NetworkingConfig), published ports, --ip,
--dns and --add-host are validated and its /etc files written. At start it gets a namespace of
its own (bind-mounted under the exec root) with its veths plugged in and its ports published
before the process runs: the runtime makes it at create and it is plugged before start (so the
init comes from the runtime's zygote), or, with an older supervisor, it is made first and joined
by path. At exit all of it goes. caisd's shutdown removes the firewall table; its next start re-creates it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator

from cais.engine.errors import Conflict, EngineError, InvalidParameter, NotFound
from cais.network import etcfiles, links, ports
from cais.network.driver import Mode
from cais.network.errors import Conflict as NetConflict
from cais.network.errors import InvalidConfig, NetworkError
from cais.network.errors import NotFound as NetNotFound

log = logging.getLogger("cais.engine")
_FILTERS = {"name", "id", "driver", "label", "type", "dangling", "scope"}
ATTACHABLE = ("bridge", "macvlan", "ipvlan")  # drivers whose networks have endpoints of their own


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidConfig as e:
        raise InvalidParameter(str(e)) from None
    except NetConflict as e:
        raise Conflict(str(e)) from None
    except NetNotFound as e:
        raise NotFound(str(e)) from None
    except NetworkError as e:
        raise EngineError(str(e)) from None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class NetworkService:
    def __init__(self, engine, *, bridge: str = "none", dns: list[str] | None = None,  # type: ignore[no-untyped-def]
                 mtu: int = 1500, bridge_ipam: list[dict] | None = None, bridge_ipv6: bool = False) -> None:
        from cais.network.manager import NetworkManager

        self.engine = engine
        self.default_bridge = bridge  # "none": no default bridge network, containers default to none
        self.dns = dns or []
        self.manager = NetworkManager(os.path.join(engine.data_root, "network"),
                                      os.path.join(engine.exec_root, "network"), upstream_dns=dns or None,
                                      mtu=mtu, bridge_name=bridge, bridge_ipam=bridge_ipam,
                                      bridge_ipv6=bridge_ipv6)

    # ---- daemon lifecycle ---------------------------------------------------------------------
    def open(self, records: list[dict]) -> None:
        """After a (re)start: plumbing and rules re-ensured, running containers' ports and DNS back."""
        running = [r for r in records if r["State"]["Running"]]
        with _errors():
            self.manager.start(alive={r["Id"] for r in running})
        for record in running:
            if Mode.parse(record["HostConfig"].get("NetworkMode")).kind != "bridge":
                continue
            try:
                self.manager.restore_dns(record["Id"], record["HostConfig"].get("Dns"))
                bound = [ports.Binding(key.partition("/")[2], int(key.partition("/")[0]), b["HostIp"],
                                       int(b["HostPort"]))
                         for key, hosts in (record["NetworkSettings"].get("Ports") or {}).items()
                         for b in hosts or []]
                primary = self._primary_endpoint(record)
                if bound and primary:
                    self.manager.publish(record["Id"], bound, primary["IPAddress"],
                                         primary.get("GlobalIPv6Address") or "")
            except NetworkError as e:
                log.warning("container %s: its network could not be restored: %s", record["Id"][:12], e)

    def shutdown(self) -> None:
        self.manager.shutdown()

    # ---- the /networks API ----------------------------------------------------------------------
    def _event(self, action: str, rec: dict, **attrs: str) -> None:
        self.engine.events.emit("network", action, rec["Id"], {"name": rec["Name"], "type": rec["Driver"], **attrs})

    def create(self, body: dict) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("Name"), str) or not body["Name"]:
            raise InvalidParameter("invalid network create request: a Name is required")
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict) or (ipam.get("Driver") or "default") != "default":
            raise InvalidParameter("only the default IPAM driver is supported")
        for key in ("Labels", "Options"):
            if not isinstance(body.get(key) or {}, dict):
                raise InvalidParameter(f"invalid {key}: expected an object")
        if not isinstance(ipam.get("Config") or [], list) or not isinstance(body.get("Driver") or "", str):
            raise InvalidParameter("invalid network create request: IPAM.Config is a list, Driver a string")
        with _errors():
            rec = self.manager.create(body["Name"], driver=body.get("Driver") or "bridge",
                                      ipam_config=ipam.get("Config") or [], internal=bool(body.get("Internal")),
                                      labels=body.get("Labels") or {}, options=body.get("Options") or {},
                                      enable_ipv6=bool(body.get("EnableIPv6")),
                                      enable_ipv4=body.get("EnableIPv4") is not False,
                                      attachable=bool(body.get("Attachable")))
        self._event("create", rec)
        return {"Id": rec["Id"], "Warning": ""}

    def inspect(self, ref: str) -> dict:
        with _errors():
            return self.manager.inspect(self._find(ref)["Id"])

    def _find(self, ref: str) -> dict:
        with _errors():
            return self.manager.get(ref)

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        from cais.engine.containers import all_labels_match

        filters = filters or {}
        for key in filters:
            if key not in _FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        out = []
        for rec in self.manager.list():
            builtin = rec["Name"] in ("bridge", "host", "none")
            if filters.get("name") and not any(n in rec["Name"] for n in filters["name"]):
                continue
            if filters.get("id") and not any(rec["Id"].startswith(i) for i in filters["id"]):
                continue
            if filters.get("driver") and rec["Driver"] not in filters["driver"]:
                continue
            if filters.get("type") and ("builtin" if builtin else "custom") not in filters["type"]:
                continue
            if filters.get("dangling"):
                dangling = not builtin and not rec.get("Cais", {}).get("Endpoints")
                if str(dangling).lower() not in [v.lower() for v in filters["dangling"]] and not (
                        dangling and "1" in filters["dangling"]):
                    continue
            if not all_labels_match(rec.get("Labels") or {}, filters.get("label", [])):
                continue
            out.append(self.manager.inspect(rec["Id"]))
        return sorted(out, key=lambda r: r["Created"])

    def remove(self, ref: str) -> None:
        rec = self._find(ref)
        stopped = [cid for cid, r in self.engine.store.records.items()
                   if rec["Name"] in (r["NetworkSettings"].get("Networks") or {}) and not r["State"]["Running"]]
        if stopped and rec["Name"] not in ("bridge", "host", "none"):
            raise Conflict(f"error while removing network: network {rec['Name']} id {rec['Id']} is used by "
                           f"container {stopped[0][:12]}")
        with _errors():
            self.manager.remove(rec["Id"])
        self._event("destroy", rec)

    def prune(self, filters: dict | None = None) -> dict:
        deleted = []
        for rec in self.list({k: v for k, v in (filters or {}).items() if k == "label"}):
            if rec["Name"] in ("bridge", "host", "none") or rec["Containers"]:
                continue
            with contextlib.suppress(EngineError):
                self.remove(rec["Id"])
                deleted.append(rec["Name"])
        return {"NetworksDeleted": deleted}

    def connect(self, ref: str, container: str, config: dict | None) -> None:
        rec = self._find(ref)
        record = self.engine.get(container)
        mode = Mode.parse(record["HostConfig"].get("NetworkMode"))
        if mode.kind != "bridge" or rec["Driver"] not in ATTACHABLE:
            raise Conflict("container sharing network namespace with another container or host cannot be "
                           "connected to any other network" if mode.kind != "bridge" else
                           f"container cannot be connected to the {rec['Name']} network")
        config = config or {}
        networks = record["NetworkSettings"]["Networks"]
        if rec["Name"] in networks:
            raise Conflict(f"endpoint with name {record['Name'].lstrip('/')} already exists in network {rec['Name']}")
        static = self._static(config, rec)
        ep = self._attach(record, rec, static) if record["State"]["Running"] else self._stored(rec, static)
        with self.engine.store.lock:
            networks[rec["Name"]] = ep
            self.engine.store.save(record)
        if record["State"]["Running"]:
            self._write_hosts(record)
        self._event("connect", rec, container=record["Id"])

    def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        rec = self._find(ref)
        record = self.engine.get(container)
        networks = record["NetworkSettings"]["Networks"]
        if rec["Name"] not in networks:
            raise Conflict(f"container {record['Id'][:12]} is not connected to network {rec['Name']}")
        if rec["Driver"] not in ATTACHABLE:
            raise Conflict(f"container cannot be disconnected from the {rec['Name']} network")
        if record["State"]["Running"]:
            with _errors():
                self.manager.detach(record["Id"], rec["Id"])
        with self.engine.store.lock:
            del networks[rec["Name"]]
            self.engine.store.save(record)
        self._event("disconnect", rec, container=record["Id"])

    # ---- containers ---------------------------------------------------------------------------
    @staticmethod
    def _static(config: dict, rec: dict) -> dict:
        ipam = config.get("IPAMConfig") or {}
        aliases = config.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidParameter("invalid Aliases: expected a list of strings")
        ip, ip6 = ipam.get("IPv4Address") or "", ipam.get("IPv6Address") or ""
        if ip or ip6:
            from cais.network.ipam import parse_address
            with _errors():
                for value in (ip, ip6):
                    if value:
                        parse_address(value, "IP address")
            if rec["Name"] == "bridge":
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
        if aliases and rec["Name"] == "bridge":
            raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        links = config.get("Links") or []  # CONTAINER[:ALIAS], resolved by the embedded DNS for this one
        if not isinstance(links, list) or not all(isinstance(a, str) for a in links):
            raise InvalidParameter("invalid Links: expected a list of strings")
        for link in links:
            if not link.split(":")[0].strip("/") or link.count(":") > 1:
                raise InvalidParameter(f"bad format for links: {link}")
        ipam_config = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}  # omitempty, as dockerd
        return {"IPAMConfig": ipam_config or None,
                "Aliases": aliases or None, "Links": links or None}

    def _stored(self, rec: dict, static: dict) -> dict:
        return {"Links": None, **static, "MacAddress": "", "NetworkID": rec["Id"], "EndpointID": "", "Gateway": "",
                "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}

    def prepare(self, record: dict, body: dict) -> None:
        """At create: the network mode resolved and checked, endpoints recorded, /etc files written."""
        host = record["HostConfig"]
        value = given = host.get("NetworkMode")
        if value in (None, "", "default"):
            value = "bridge" if self.default_bridge != "none" else "none"
        mode = Mode.parse(value)
        host["NetworkMode"] = value
        self._extra_hosts(host)  # checked now: a bad --add-host fails at create
        with _errors():
            wanted = ports.bindings(host.get("PortBindings"), record["Config"].get("ExposedPorts"),
                                    bool(host.get("PublishAllPorts")))
        networks: dict[str, dict] = {}
        endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        if not isinstance(endpoints, dict) or not all(isinstance(c, dict | None) for c in endpoints.values()):
            raise InvalidParameter("invalid NetworkingConfig.EndpointsConfig: expected an object of objects")
        if mode.kind == "container":
            other = self.engine.get(mode.network)
            if other["Id"] == record["Id"]:
                raise InvalidParameter("cannot join own network namespace")
            host["NetworkMode"] = f"container:{other['Id']}"
            for what, given_too in (("hostname", body.get("Hostname")), ("dns", host.get("Dns")),
                                    ("custom host-to-IP mapping", host.get("ExtraHosts")),
                                    ("port publishing", host.get("PortBindings") or host.get("PublishAllPorts")),
                                    ("port exposing", body.get("ExposedPorts"))):
                if given_too:  # dockerd's messages: the namespace, and so these, belong to the other
                    kind = " container type" if what.startswith("port") else ""
                    raise InvalidParameter(f"conflicting options: {what} and the{kind} network mode")
        elif mode.kind == "bridge":
            rec = self._find(mode.network)
            if rec["Driver"] not in ATTACHABLE:
                raise InvalidParameter(f"network {mode.network} is not a bridge, macvlan or ipvlan network")
            primary = {mode.network, rec["Name"], rec["Id"], given}
            config = next((c for n, c in endpoints.items() if n in primary), None) or {}
            networks[rec["Name"]] = self._stored(rec, self._static(config, rec))
            mac = body.get("MacAddress") or config.get("MacAddress")  # API < 1.44 / >= 1.44
            if mac:
                from cais.network.bridge import parse_mac

                with _errors():
                    record["Config"]["MacAddress"] = parse_mac(mac)
            for name, config in endpoints.items():
                if name in primary:
                    continue
                other_rec = self._find(name)
                if other_rec["Name"] not in networks:
                    networks[other_rec["Name"]] = self._stored(other_rec, self._static(config or {}, other_rec))
        else:
            networks[mode.kind] = self._stored(self._find(mode.kind), {"IPAMConfig": None, "Aliases": None})
        self._register_links(record, mode)
        if mode.kind != "bridge" and (body.get("MacAddress") or any((c or {}).get("MacAddress")
                                                                    for c in endpoints.values())):
            raise InvalidParameter("conflicting options: mac-address and the network mode")
        settings = record["NetworkSettings"]
        settings["Networks"] = networks
        settings["Ports"] = ports.as_api([], wanted) if mode.kind == "bridge" else {}
        self.write_etc(record)

    def _register_links(self, record: dict, mode: Mode) -> None:
        """At create: HostConfig.Links (`--link NAME[:ALIAS]`) checked and recorded as dockerd does.

        On the default bridge (or none) each names a container, kept by id in the record (inspect
        shows `/CHILD:/PARENT/ALIAS` by their current names, see inspect_links). On a user-defined
        network they are nothing here (the CLI also sends them as the endpoint's Links, answered by
        the embedded DNS), and inspect shows none.
        """
        host = record["HostConfig"]
        given = host.get("Links") or []
        if not isinstance(given, list) or not all(isinstance(x, str) for x in given):
            raise InvalidParameter("invalid Links: expected a list of strings")
        if given and mode.kind == "container":
            raise InvalidParameter("conflicting options: container type network can't be used with links. "
                                   "This would result in undefined behavior")
        if given and mode.kind == "host":
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        host["Links"] = None
        if not given or (mode.kind == "bridge" and mode.network != "bridge"):
            return
        resolved: list[list[str]] = []
        for text in given:
            try:
                name, alias = links.parse_link(text)
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
            try:
                child = self.engine.get(name)
                while Mode.parse(child["HostConfig"].get("NetworkMode")).kind == "container":
                    child = self.engine.get(Mode.parse(child["HostConfig"]["NetworkMode"]).network)
            except NotFound as e:
                raise InvalidParameter(f"could not get container for {name}: {e}") from None
            if Mode.parse(child["HostConfig"].get("NetworkMode")).kind == "host":
                raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                       "This would result in undefined behavior")
            resolved.append([child["Id"], alias])
        record["Cais"]["Links"] = resolved

    def inspect_links(self, record: dict) -> list[str] | None:
        """Inspect's HostConfig.Links: `/CHILD:/PARENT/ALIAS` of the linked containers that still exist."""
        return [f"{child['Name']}:{record['Name']}/{alias}" for alias, child in self._children(record)] or None

    def _children(self, record: dict) -> Iterator[tuple[str, dict]]:
        """(alias, container) of the links of `record` whose container still exists."""
        for cid, alias in (record.get("Cais") or {}).get("Links") or []:
            child = self.engine.store.records.get(cid)
            if child is not None:
                yield alias, child

    def link_env(self, record: dict) -> list[str]:
        """At start: the variables of the container's links (dockerd's), its linked containers
        checked to be running on the default bridge."""
        if record["HostConfig"].get("NetworkMode") != "bridge":
            return []
        out = []
        for alias, child in self._children(record):
            link_name = f"{record['Name']}/{alias}"
            endpoint = (child["NetworkSettings"].get("Networks") or {}).get("bridge")
            if endpoint is None:
                raise EngineError(f"Cannot link to {child['Name']}, as it does not belong to the default network")
            if not child["State"]["Running"] or not endpoint.get("IPAddress"):
                raise EngineError(f"Cannot link to a non running container: {child['Name']} AS {link_name}")
            out += links.env(link_name, endpoint["IPAddress"], child["Config"].get("Env"),
                             child["Config"].get("ExposedPorts"))
        return out

    def _link_hosts(self, record: dict) -> list[tuple[str, str]]:
        """/etc/hosts lines of the linked containers on the default bridge: (names, address)."""
        if record["HostConfig"].get("NetworkMode") != "bridge":
            return []
        out = []
        for alias, child in self._children(record):
            endpoint = (child["NetworkSettings"].get("Networks") or {}).get("bridge") or {}
            names = links.host_names(alias, child["Config"].get("Hostname") or child["Id"][:12],
                                     child["Name"].lstrip("/"))
            out += [(names, a) for a in (endpoint.get("IPAddress"), endpoint.get("GlobalIPv6Address")) if a]
        return out

    def _update_parents(self, cid: str) -> None:
        """A linked container started (with a new address): the hosts files of the running ones linking to it."""
        for parent in list(self.engine.store.records.values()):
            linked = (parent.get("Cais") or {}).get("Links") or []
            if parent["State"]["Running"] and any(c == cid for c, _ in linked):
                with contextlib.suppress(OSError):
                    self._write_hosts(parent)

    def _primary_endpoint(self, record: dict) -> dict | None:
        mode = Mode.parse(record["HostConfig"].get("NetworkMode"))
        if mode.kind != "bridge":
            return None
        with contextlib.suppress(NetworkError):
            return self.manager.endpoint(record["Id"], mode.network)
        return None

    def write_etc(self, record: dict) -> None:
        cid, config, host = record["Id"], record["Config"], record["HostConfig"]
        mode = Mode.parse(host.get("NetworkMode"))
        user_defined = mode.kind == "bridge" and mode.network != "bridge"
        host_resolv = _read("/etc/resolv.conf")
        if mode.kind == "host" and not host.get("Dns"):
            resolv = host_resolv
        else:
            resolv = etcfiles.resolv_conf(host_resolv, dns=host.get("Dns") or self.dns or None,
                                          search=host.get("DnsSearch") or None,
                                          options=host.get("DnsOptions") or None, embedded=user_defined)
        files = {"hostname": f"{config.get('Hostname') or cid[:12]}\n", "resolv.conf": resolv}
        for name, text in files.items():
            with open(self.engine._path(cid, name), "w") as f:
                f.write(text)
        self._write_hosts(record)
        record["HostnamePath"] = self.engine._path(cid, "hostname")
        record["HostsPath"] = self.engine._path(cid, "hosts")
        record["ResolvConfPath"] = self.engine._path(cid, "resolv.conf")

    def _extra_hosts(self, host: dict) -> list[tuple[str, str]]:
        with _errors():
            return [etcfiles.parse_add_host(e, self.manager.host_gateway()) for e in host.get("ExtraHosts") or []]

    def _write_hosts(self, record: dict) -> None:
        cid, config, host = record["Id"], record["Config"], record["HostConfig"]
        extra = self._extra_hosts(host) + self._link_hosts(record)
        if Mode.parse(host.get("NetworkMode")).kind == "host":
            text = _read("/etc/hosts") + "".join(f"{ip}\t{name}\n" for name, ip in extra)
        else:
            addresses = [a for ep in record["NetworkSettings"]["Networks"].values()
                         for a in (ep["IPAddress"], ep.get("GlobalIPv6Address")) if a]
            text = etcfiles.hosts(config.get("Hostname") or cid[:12], addresses, extra, config.get("Domainname") or "")
        with open(self.engine._path(cid, "hosts"), "w") as f:
            f.write(text)

    @staticmethod
    def sandboxed(record: dict) -> bool:
        """Whether the container gets a network namespace of its own (not the host's or another's)."""
        return Mode.parse(record["HostConfig"].get("NetworkMode")).kind not in ("host", "container")

    def setup(self, record: dict, source: str | None = None) -> str | None:
        """At start: the path of the namespace the container joins (None: its own/host). Before the
        runtime, a sandbox namespace is made here; after its create, `source` (/proc/PID/ns/net, the
        one the runtime made) is bound and plugged instead."""
        cid, host = record["Id"], record["HostConfig"]
        mode = Mode.parse(host.get("NetworkMode"))
        if mode.kind == "host":
            return None
        if mode.kind == "container":
            other = self.engine.get(mode.network)
            if not other["State"]["Running"]:
                raise Conflict(f"cannot join network of a non running container: {other['Id'][:12]}")
            # as dockerd: the other container's hostname and /etc files, since its network is this one's
            for key in ("Hostname", "Domainname"):
                record["Config"][key] = other["Config"].get(key) or ""
            for name in ("hostname", "hosts", "resolv.conf"):
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(self.engine._path(other["Id"], name), self.engine._path(cid, name))
            return f"/proc/{other['State']['Pid']}/ns/net"
        with _errors():
            path = self.manager.create_sandbox(cid, source)
            try:
                settings = record["NetworkSettings"]
                name = record["Name"].lstrip("/")
                first = self._find(mode.network)["Id"] if mode.kind == "bridge" else ""
                attached = False
                for net_name, stored in list(settings["Networks"].items()):
                    if net_name == "none":
                        continue
                    attached = True
                    rec = self._find(stored.get("NetworkID") or net_name)
                    mac = (record["Config"].get("MacAddress") or "") if rec["Id"] == first else ""
                    settings["Networks"][net_name] = self._attach(record, rec, stored, name=name, netns_path=path,
                                                                  mac=mac)
                primary = self._primary_endpoint(record)
                if primary is not None and self._find(mode.network)["Driver"] != "bridge":
                    primary = None  # macvlan/ipvlan: on the parent's network itself, nothing to publish
                    settings["Ports"] = {}  # (dockerd's inspect shows none either)
                if primary is not None:
                    wanted = ports.bindings(host.get("PortBindings"), record["Config"].get("ExposedPorts"),
                                            bool(host.get("PublishAllPorts")))
                    try:
                        bound = self.manager.publish(cid, wanted, primary["IPAddress"],
                                                     primary.get("GlobalIPv6Address") or "")
                    except NetworkError as e:  # dockerd's words and 500: compose looks for them
                        raise EngineError(f"driver failed programming external connectivity on endpoint {name} "
                                          f"({primary['EndpointID']}): {e}") from None
                    settings["Ports"] = ports.as_api(bound, wanted, record["Config"].get("ExposedPorts"))
                    for key in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "EndpointID",
                                "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway"):
                        settings[key] = primary[key] if mode.network == "bridge" else settings.get(key, "")
                settings["SandboxKey"] = path
                settings["SandboxID"] = cid
                if attached:  # its addresses; with none, /etc/hosts stays as create wrote it
                    self._write_hosts(record)
                self._update_parents(cid)
            except BaseException:
                self.manager.release(cid)
                raise
        return path

    def _attach(self, record: dict, rec: dict, stored: dict, *, name: str | None = None,
                netns_path: str | None = None, mac: str = "") -> dict:
        with _errors():
            ep = self.manager.attach(record["Id"], rec["Id"], netns_path or self.manager.sandbox_path(record["Id"]),
                                     name=name or record["Name"].lstrip("/"), aliases=stored.get("Aliases") or [],
                                     ip=(stored.get("IPAMConfig") or {}).get("IPv4Address") or "",
                                     ip6=(stored.get("IPAMConfig") or {}).get("IPv6Address") or "",
                                     dns=record["HostConfig"].get("Dns"), mac=mac,
                                     links=stored.get("Links") or [])
        return {**ep, "IPAMConfig": stored.get("IPAMConfig")}

    @staticmethod
    def apply_spec(oci: dict, path: str | None) -> None:
        """The container joins the namespace on `path` instead of the runtime making a new one."""
        if path is None:
            return
        namespaces = [n for n in oci["linux"]["namespaces"] if n["type"] != "network"]
        oci["linux"]["namespaces"] = [*namespaces, {"type": "network", "path": path}]

    def teardown(self, record: dict) -> None:
        """At exit (or a failed start): endpoints, ports, DNS socket and namespace go; addresses freed."""
        cid = record["Id"]
        with contextlib.suppress(NetworkError, OSError):
            self.manager.release(cid)
        settings = record["NetworkSettings"]
        for net_name, ep in list(settings.get("Networks", {}).items()):
            settings["Networks"][net_name] = {**ep, "EndpointID": "", "Gateway": "", "IPAddress": "",
                                              "IPPrefixLen": 0, "MacAddress": "", "DNSNames": None,
                                              "IPv6Gateway": "", "GlobalIPv6Address": "",
                                              "GlobalIPv6PrefixLen": 0}
        for key in ("IPAddress", "Gateway", "MacAddress", "EndpointID", "SandboxKey", "SandboxID",
                    "GlobalIPv6Address", "IPv6Gateway"):
            settings[key] = ""
        settings["IPPrefixLen"] = settings["GlobalIPv6PrefixLen"] = 0
        settings["Ports"] = {k: None for k in settings.get("Ports") or {}}
