"""The macvlan and ipvlan drivers: containers on sub-interfaces of a host interface, the parent.

As dockerd's: `-o parent=IFACE` names the parent, one network per parent and driver; a parent
`eth0.10` that does not exist is made (an 802.1q sub-interface of eth0, VLAN 10) and deleted with
the network. No parent: the network gets a link of its own with nothing behind it (dockerd's
dummy `dm-…`), so its containers reach each other and nothing else. The kernel keeps a
macvlan/ipvlan child from talking to its parent, so the host cannot reach the containers through
it either, and there is no NAT, published port or firewall rule: the containers are on the
parent's network directly. Each container's interface is created inside its namespace
(IFLA_NET_NS_FD) under its final name, eth0, eth1…
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from cais.network.bridge import iproute, link_index
from cais.network.errors import InvalidConfig, NetworkError

DRIVERS = ("macvlan", "ipvlan")
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}  # IFLA_MACVLAN_MODE
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}  # IFLA_IPVLAN_MODE
IPVLAN_FLAGS = ("bridge", "private", "vepa")
_OWN_PREFIX = {"macvlan": "caisdm-", "ipvlan": "caisdi-"}  # + 8 hex digits: 15 characters, the kernel's limit


@dataclass(frozen=True)
class Config:
    """A network's driver settings, from its `-o` options."""

    driver: str
    parent: str
    mode: str  # macvlan_mode or ipvlan_mode
    own_parent: bool  # no -o parent: a link made for the network alone (it is then internal)

    @property
    def routed(self) -> bool:
        """ipvlan l3/l3s: the parent routes; containers get a default route through their interface."""
        return self.driver == "ipvlan" and self.mode != "l2"


def parse(driver: str, options: dict, network_id: str) -> Config:
    """The driver's options checked with dockerd's words; the parent is not looked up here."""
    parent = str(options.get("parent") or "")
    if driver == "macvlan":
        mode = str(options.get("macvlan_mode") or "bridge")
        if mode not in MACVLAN_MODES:
            raise InvalidConfig(f"requested macvlan mode '{mode}' is not valid, 'bridge' mode is the macvlan "
                                "driver default")
    else:
        mode = str(options.get("ipvlan_mode") or "l2")
        if mode not in IPVLAN_MODES:
            raise InvalidConfig(f"requested ipvlan mode '{mode}' is not valid, 'l2' mode is the ipvlan driver default")
        flag = str(options.get("ipvlan_flag") or "bridge")
        if flag not in IPVLAN_FLAGS:
            raise InvalidConfig(f"requested ipvlan flag '{flag}' is not valid, 'bridge' is the ipvlan driver default")
        if flag != "bridge":  # IFLA_IPVLAN_FLAGS is not in pyroute2's message map
            raise InvalidConfig(f"ipvlan_flag {flag!r} is not supported by cais: only 'bridge'")
    if parent == "lo":
        raise InvalidConfig(f"loopback interface is not a valid {driver} parent link")
    if len(parent) > 15 or any(c in parent for c in "/ \t\n:"):
        raise InvalidConfig(f"invalid parent interface name {parent!r}")
    if not parent:
        return Config(driver, _OWN_PREFIX[driver] + network_id[:8], mode, True)
    return Config(driver, parent, mode, False)


def host_ensure_parent(config: Config) -> str:
    """Make the parent if it is missing; what was made: "" (it was there), "vlan", "dummy" or "bridge"."""
    with iproute() as ipr:
        if link_index(ipr, config.parent) is not None:
            return ""
        if config.own_parent:
            made = _own_link(ipr, config.parent)
        else:
            _vlan(ipr, config.parent)
            made = "vlan"
        ipr.link("set", index=link_index(ipr, config.parent), state="up")
        return made


def _own_link(ipr, name: str) -> str:  # noqa: ANN001
    """A dummy link; without the kernel's dummy driver, a bridge with no ports, which sends nothing
    anywhere just the same (macvlan/ipvlan children of one parent still reach each other)."""
    for kind in ("dummy", "bridge"):
        try:
            ipr.link("add", ifname=name, kind=kind)
            return kind
        except Exception as e:
            if getattr(e, "code", None) != errno.EOPNOTSUPP or kind == "bridge":
                raise NetworkError(f"cannot create the link {name}: {e}") from e
    raise AssertionError("unreachable")


def _vlan(ipr, name: str) -> None:  # noqa: ANN001
    base, dot, vid = name.rpartition(".")
    if not dot or not base or not vid.isdigit():
        raise InvalidConfig(f"invalid subinterface vlan name {name}, example formatting is eth0.10")
    if not 1 <= int(vid) <= 4094:
        raise InvalidConfig(f"vlan id must be between 1-4094, received: {int(vid)}")
    base_index = link_index(ipr, base)
    if base_index is None:
        raise InvalidConfig(f"-o parent interface was not found on the host: {base}")
    try:
        ipr.link("add", ifname=name, kind="vlan", link=base_index, vlan_id=int(vid))
    except Exception as e:
        if getattr(e, "code", None) == errno.EOPNOTSUPP:
            raise NetworkError(f"cannot create the 802.1q sub-interface {name}: this kernel has no 802.1q "
                               "VLAN support (CONFIG_VLAN_8021Q)") from e
        raise NetworkError(f"cannot create the 802.1q sub-interface {name}: {e}") from e


def host_add_child(config: Config, ifname: str, netns_path: str, mtu: int | None = None) -> None:
    """The container's interface `ifname` on the parent, made inside the namespace on `netns_path`."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with iproute() as ipr:
            parent = link_index(ipr, config.parent)
            if parent is None:
                raise NetworkError(f"the parent interface {config.parent} of the {config.driver} network is gone")
            kind = ({"kind": "macvlan", "macvlan_mode": config.mode} if config.driver == "macvlan"
                    else {"kind": "ipvlan", "ipvlan_mode": IPVLAN_MODES[config.mode]})
            extra = {"mtu": mtu} if mtu else {}
            try:
                ipr.link("add", ifname=ifname, link=parent, net_ns_fd=fd, **kind, **extra)
            except Exception as e:
                if getattr(e, "code", None) == errno.EOPNOTSUPP:
                    raise NetworkError(f"failed to create the {config.driver} port: this kernel has no "
                                       f"{config.driver} support (CONFIG_{config.driver.upper()})") from e
                if getattr(e, "code", None) == errno.EBUSY:
                    raise NetworkError(f"failed to create the {config.driver} port: the parent {config.parent} "
                                       "is busy (another driver or a passthru port uses it)") from e
                raise NetworkError(f"failed to create the {config.driver} port: {e}") from e
    finally:
        os.close(fd)
