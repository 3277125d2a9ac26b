"""IPv6-only networks (`network create --ipv6 --ipv4=false`, API 1.47's EnableIPv4: false) in a sandbox."""

from __future__ import annotations

import socket
import subprocess

import pytest

from cais.network.errors import InvalidConfig
from cais.network.ports import bindings, parse_publish
from tests.network.conftest import Lab, http_get


def test_ipv6_only_bridge(lab: Lab) -> None:
    m = lab.manager
    rec = m.create("only6", enable_ipv6=True, enable_ipv4=False, ipam_config=[{"Subnet": "fd00:ca20::/64"}])
    info = m.inspect("only6")
    assert info["EnableIPv4"] is False and info["EnableIPv6"] is True
    assert info["IPAM"]["Config"] == [{"Subnet": "fd00:ca20::/64", "Gateway": "fd00:ca20::1"}]  # no IPv4 pool
    web_ns = lab.sandbox("web")
    ep = m.attach("web", "only6", web_ns, name="web")
    assert (ep["IPAddress"], ep["IPPrefixLen"], ep["Gateway"]) == ("", 0, "")
    assert ep["GlobalIPv6Address"] == "fd00:ca20::2" and ep["IPv6Gateway"] == "fd00:ca20::1"
    assert ep["MacAddress"] == "02:42:00:00:00:02"  # from the IPv6 address's last 4 bytes
    assert m.inspect("only6")["Containers"]["web"]["IPv4Address"] == ""
    lab.serve(web_ns, "web")
    lab.wait_tcp("fd00:ca20::2")
    client = lab.sandbox("client")
    m.attach("client", "only6", client, name="client")
    assert "inet " not in lab.run(client, "ip", "-4", "addr", "show", "eth0").stdout
    assert "default via fd00:ca20::1" in lab.run(client, "ip", "-6", "route").stdout
    assert lab.fetch(client, "http://web/").stdout == "hello from web\n"  # AAAA from the embedded DNS
    # a published port: IPv6 is DNAT'ed, IPv4 (no address to DNAT to) relayed by the proxy
    bound = m.publish("web", bindings(parse_publish("18110:80")), "", ep["GlobalIPv6Address"])
    assert {b.host_ip for b in bound} == {"", "::"}  # every IPv4 and every IPv6 address
    for url in ("http://127.0.0.1:18110/", "http://[::1]:18110/"):
        assert http_get(url) == "hello from web\n", url
    with socket.create_connection(("127.0.0.1", 18110), timeout=5):
        pass
    rules = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
    assert "18110" not in rules and "dnat to [fd00:ca20::2]:80" in subprocess.run(
        ["nft", "list", "table", "ip6", "cais"], capture_output=True, text=True).stdout
    m.unpublish("web")
    with pytest.raises(InvalidConfig, match="IPv4 disabled"):
        m.attach("fixed", "only6", lab.sandbox("fixed"), name="fixed", ip="10.0.0.5")
    assert m.ipam.pools(rec["Id"])[0].allocated == {"fd00:ca20::2": "web", "fd00:ca20::3": "client"}
    auto = m.create("auto6", enable_ipv6=True, enable_ipv4=False)
    assert [c["Subnet"][:2] for c in auto["IPAM"]["Config"]] == ["fd"]  # one unique local /64, nothing else


def test_ipv6_only_bad_input(lab: Lab) -> None:
    m = lab.manager
    with pytest.raises(InvalidConfig, match="IPv4 or IPv6 must be enabled"):
        m.create("none46", enable_ipv4=False)
    with pytest.raises(InvalidConfig, match="IPv4 subnet needs IPv4"):
        m.create("mixed", enable_ipv6=True, enable_ipv4=False,
                 ipam_config=[{"Subnet": "10.80.0.0/24"}, {"Subnet": "fd00:ca22::/64"}])
    assert [r["Name"] for r in m.list()] == ["none", "host", "bridge"]
