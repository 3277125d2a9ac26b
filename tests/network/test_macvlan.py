"""macvlan and ipvlan networks end to end: busybox containers by cais-runtime in a sandbox namespace.

The parent is a veth pair made inside the sandbox. The kernel of the test machine may lack ipvlan,
802.1q VLANs or dummy links (CONFIG_IPVLAN, CONFIG_VLAN_8021Q, CONFIG_DUMMY): where it does, the
tests check the one-line error and that nothing is left behind, and the rest where it does not.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator

import pytest

from cais.network import netns
from cais.network.bridge import iproute, link_index
from cais.network.errors import Conflict, InvalidConfig, NetworkError
from tests.network.conftest import Lab

PARENT, PEER = "cais-nd-p0", "cais-nd-p1"


def _links(ns: str | None = None) -> dict[str, str]:
    """name -> kind (plus " MODE" for macvlan) of the links of the namespace on `ns` (None: the sandbox)."""
    def kinds() -> dict[str, str]:
        with iproute() as ipr:
            out = {}
            for link in ipr.get_links():
                info = link.get_attr("IFLA_LINKINFO")
                kind = (info.get_attr("IFLA_INFO_KIND") if info else "") or ""
                if kind == "macvlan":
                    kind += " " + info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_MACVLAN_MODE")
                out[link.get_attr("IFLA_IFNAME")] = kind
            return out
    return netns.run_in(ns, kinds)


def _supported(kind: str, **attrs: object) -> bool:
    """Whether this kernel can make a link of `kind` (tried in the sandbox, removed at once)."""
    def probe() -> bool:
        with iproute() as ipr:
            try:
                ipr.link("add", ifname="cais-nd-probe", kind=kind, link=link_index(ipr, PARENT), **attrs)
            except Exception as e:
                if getattr(e, "code", None) == errno.EOPNOTSUPP:
                    return False
                raise
            ipr.link("del", index=link_index(ipr, "cais-nd-probe"))
            return True
    return netns.run_in(None, probe)


@pytest.fixture
def parent(lab: Lab) -> Iterator[str]:
    """A veth pair in the sandbox, both ends up: PARENT is the parent of the networks."""
    def make() -> None:
        with iproute() as ipr:
            ipr.link("add", ifname=PARENT, kind="veth", peer={"ifname": PEER})
            for name in (PARENT, PEER):
                ipr.link("set", index=link_index(ipr, name), state="up")
    netns.run_in(None, make)
    yield PARENT  # the sandbox goes with the test, and the pair with it


def _routes(lab: Lab, ns: str) -> str:
    return lab.run(ns, "ip", "route").stdout


def test_macvlan_containers_reach_each_other_by_name(lab: Lab, parent: str) -> None:
    m = lab.manager
    before = _links()
    m.create("mv", driver="macvlan", ipam_config=[{"Subnet": "10.61.0.0/24", "Gateway": "10.61.0.254"}],
                   options={"parent": parent})
    assert _links() == before  # a parent that exists is only used
    info = m.inspect("mv")
    assert info["Driver"] == "macvlan" and info["Options"] == {"parent": parent}
    assert info["IPAM"]["Config"] == [{"Subnet": "10.61.0.0/24", "Gateway": "10.61.0.254"}]
    web_ns = lab.sandbox("web")
    ep = m.attach("web", "mv", web_ns, name="web", aliases=["www"])
    assert ep["IPAddress"] == "10.61.0.1" and ep["Gateway"] == "10.61.0.254"
    assert ep["MacAddress"] == "02:42:0a:3d:00:01"  # docker's, from the address, as on bridges
    lab.serve(web_ns, "web")
    client_ns = lab.sandbox("client")
    m.attach("client", "mv", client_ns, name="client", ip="10.61.0.9")
    assert "default via 10.61.0.254 dev eth0" in _routes(lab, client_ns)
    for target in ("web", "www", "web.mv", "10.61.0.1"):  # the embedded DNS answers on macvlan networks too
        done = lab.fetch(client_ns, f"http://{target}/", 10)
        assert done.stdout == "hello from web\n", (target, done.returncode, done.stderr)
    assert _links() == before  # nothing on the host side: the containers' links are in their namespaces
    assert _links(client_ns) == {"lo": "", "eth0": "macvlan bridge"}
    assert list(m.inspect("mv")["Containers"]) == ["web", "client"]
    with pytest.raises(Conflict, match="already using parent interface cais-nd-p0"):
        m.create("mv2", driver="macvlan", options={"parent": parent})
    m.detach("client", "mv")
    assert _links(client_ns) == {"lo": ""}
    m.release("web")
    m.release("client")
    m.remove("mv")
    assert _links() == before  # a parent the network did not make stays


def test_macvlan_without_parent_is_internal(lab: Lab) -> None:
    m = lab.manager
    before = _links()
    rec = m.create("solo", driver="macvlan", ipam_config=[{"Subnet": "10.62.0.0/24"}])
    own = "caisdm-" + rec["Id"][:8]
    assert _links()[own] in ("dummy", "bridge")  # a bridge with no ports where the kernel has no dummy
    assert m.inspect("solo")["Options"] == {} and not m.inspect("solo")["Internal"]
    web_ns = lab.sandbox("web")
    m.attach("web", "solo", web_ns, name="web")
    lab.serve(web_ns, "web")
    client_ns = lab.sandbox("client")
    m.attach("client", "solo", client_ns, name="client")
    assert "default" not in _routes(lab, client_ns)  # dockerd: no parent, no way out, no gateway
    assert lab.fetch(client_ns, "http://web/", 10).stdout == "hello from web\n"
    m.release("web")
    m.release("client")
    m.remove("solo")
    assert _links() == before


def test_macvlan_internal_and_modes(lab: Lab, parent: str) -> None:
    m = lab.manager
    m.create("sealed", driver="macvlan", internal=True, options={"parent": parent, "macvlan_mode": "private"},
             ipam_config=[{"Subnet": "10.63.0.0/24"}])
    a_ns, b_ns = lab.sandbox("a"), lab.sandbox("b")
    ip = m.attach("a", "sealed", a_ns, name="a")["IPAddress"]
    m.attach("b", "sealed", b_ns, name="b")
    assert "default" not in _routes(lab, a_ns)
    assert _links(a_ns)["eth0"] == "macvlan private"
    lab.serve(a_ns, "a")
    assert lab.fetch(a_ns, f"http://{ip}/", 10).stdout == "hello from a\n"  # it serves
    # private mode: the kernel keeps children of one parent from talking to each other
    assert lab.fetch(b_ns, f"http://{ip}/", 2).returncode != 0
    m.release("a")
    m.release("b")
    m.remove("sealed")


def test_bad_options(lab: Lab, parent: str) -> None:
    m = lab.manager
    before = _links()
    cases = [
        ({"parent": parent, "macvlan_mode": "foo"}, "macvlan",
         "requested macvlan mode 'foo' is not valid, 'bridge' mode is the macvlan driver default"),
        ({"parent": "lo"}, "macvlan", "loopback interface is not a valid macvlan parent link"),
        ({"parent": "cais-nd-nosuch"}, "macvlan",
         "invalid subinterface vlan name cais-nd-nosuch, example formatting is eth0.10"),
        ({"parent": "cais-nd-p0.x"}, "macvlan", "invalid subinterface vlan name cais-nd-p0.x"),
        ({"parent": "cais-nd-p0.5000"}, "macvlan", "vlan id must be between 1-4094, received: 5000"),
        ({"parent": "cais-nd-no.10"}, "macvlan", "-o parent interface was not found on the host: cais-nd-no"),
        ({"parent": "a/b"}, "macvlan", "invalid parent interface name"),
        ({"parent": parent, "ipvlan_mode": "l4"}, "ipvlan",
         "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default"),
        ({"parent": parent, "ipvlan_flag": "x"}, "ipvlan", "requested ipvlan flag 'x' is not valid"),
    ]
    for options, driver, message in cases:
        with pytest.raises(InvalidConfig, match="^" + re.escape(message)):
            m.create("bad", driver=driver, options=options, ipam_config=[{"Subnet": "10.64.0.0/24"}])
    m.create("lap", driver="bridge", ipam_config=[{"Subnet": "10.64.0.0/24"}])
    with pytest.raises(Conflict, match="overlaps"):
        m.create("bad", driver="macvlan", options={"parent": parent}, ipam_config=[{"Subnet": "10.64.0.0/25"}])
    m.remove("lap")
    with pytest.raises(InvalidConfig, match="not supported"):
        m.create("bad", driver="overlay")
    assert [r["Name"] for r in m.list()] == ["none", "host", "bridge"]
    assert _links() == before
    assert os.listdir(m.ipam.root) == [m.get("bridge")["Id"] + ".json"]  # no pool left of a failed create


def test_vlan_sub_interface(lab: Lab, parent: str) -> None:
    """`-o parent=cais-nd-p0.10`: the 802.1q link made with the network and deleted with it."""
    m = lab.manager
    before = _links()
    if not _supported("vlan", vlan_id=10):
        with pytest.raises(NetworkError, match="no 802.1q VLAN support"):
            m.create("tagged", driver="macvlan", options={"parent": f"{parent}.10"})
        assert _links() == before and [r["Name"] for r in m.list()] == ["none", "host", "bridge"]
        return
    m.create("tagged", driver="macvlan", options={"parent": f"{parent}.10"}, ipam_config=[{"Subnet": "10.65.0.0/24"}])
    assert _links()[f"{parent}.10"] == "vlan"
    ns = lab.sandbox("c")
    m.attach("c", "tagged", ns, name="c")
    m.release("c")
    m.remove("tagged")
    assert _links() == before


def test_ipvlan(lab: Lab, parent: str) -> None:
    m = lab.manager
    m.create("l2", driver="ipvlan", options={"parent": parent}, ipam_config=[{"Subnet": "10.66.0.0/24"}])
    info = m.inspect("l2")
    assert info["Driver"] == "ipvlan" and info["Options"] == {"parent": parent}
    a_ns = lab.sandbox("a")
    if not _supported("ipvlan", ipvlan_mode=0):
        with pytest.raises(NetworkError, match="^failed to create the ipvlan port: this kernel has no ipvlan support"):
            m.attach("a", "l2", a_ns, name="a")
        assert m.inspect("l2")["Containers"] == {}
        assert m.ipam.pools(info["Id"])[0].allocated == {}  # the address went back
        assert _links(a_ns) == {"lo": ""}
        m.remove("l2")
        return
    ep = m.attach("a", "l2", a_ns, name="a")
    assert ep["MacAddress"] == "" and ep["Gateway"] == "10.66.0.1"
    lab.serve(a_ns, "a")
    b_ns = lab.sandbox("b")
    m.attach("b", "l2", b_ns, name="b")
    assert lab.fetch(b_ns, "http://a/", 10).stdout == "hello from a\n"
    m.release("a")
    m.release("b")
    m.remove("l2")
    m.create("l3", driver="ipvlan", options={"parent": parent, "ipvlan_mode": "l3"},
             ipam_config=[{"Subnet": "10.67.0.0/24"}])
    c_ns = lab.sandbox("c")
    ep = m.attach("c", "l3", c_ns, name="c")
    assert ep["Gateway"] == "" and "default dev eth0" in _routes(lab, c_ns)
    m.release("c")
    m.remove("l3")


def test_parent_gone(lab: Lab, parent: str) -> None:
    """A parent deleted behind the network's back: a one-line error at attach, the address given back."""
    m = lab.manager
    rec = m.create("orphan", driver="macvlan", options={"parent": parent}, ipam_config=[{"Subnet": "10.68.0.0/24"}])

    def delete() -> None:
        with iproute() as ipr:
            ipr.link("del", index=link_index(ipr, parent))  # its peer goes with it
    netns.run_in(None, delete)
    ns = lab.sandbox("c")
    with pytest.raises(NetworkError, match="^the parent interface cais-nd-p0 of the macvlan network is gone$"):
        m.attach("c", "orphan", ns, name="c")
    assert m.ipam.pools(rec["Id"])[0].allocated == {} and _links(ns) == {"lo": ""}
    m.remove("orphan")


def test_macvlan_ipv6_only(lab: Lab, parent: str) -> None:
    m = lab.manager
    m.create("mv6", driver="macvlan", enable_ipv6=True, enable_ipv4=False, options={"parent": parent},
             ipam_config=[{"Subnet": "fd00:ca30::/64"}])
    web_ns = lab.sandbox("web")
    ep = m.attach("web", "mv6", web_ns, name="web")
    assert ep["IPAddress"] == "" and ep["GlobalIPv6Address"] == "fd00:ca30::2"
    lab.serve(web_ns, "web")
    client_ns = lab.sandbox("client")
    m.attach("client", "mv6", client_ns, name="client")
    assert "default via fd00:ca30::1 dev eth0" in lab.run(client_ns, "ip", "-6", "route").stdout
    assert lab.fetch(client_ns, "http://web/", 10).stdout == "hello from web\n"
    m.release("web")
    m.release("client")
    m.remove("mv6")
