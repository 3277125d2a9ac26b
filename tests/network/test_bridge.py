"""Bridge networks end to end: busybox containers by cais-runtime in a sandbox namespace."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import threading
import urllib.request

import pytest

from cais.network import netns
from cais.network.errors import Conflict, InvalidConfig
from cais.network.etcfiles import parse_add_host
from cais.network.ports import bindings, parse_publish
from tests.network.conftest import Lab, UpstreamDns


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _get6(host: str, port: int) -> str:
    return _get(f"http://[{host}]:{port}/")


def _udp_socket(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    return s


def _pong(sock: socket.socket, times: int = 2) -> None:
    with sock:
        for _ in range(times):
            data, peer = sock.recvfrom(100)
            sock.sendto(b"pong:" + data, peer)


def _tcp_query(name: str) -> bytes:
    """The first A record of `name` from 127.0.0.11 over TCP."""
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + bytes([len(name)]) + name.encode() + b"\0\0\1\0\1"
    with socket.create_connection(("127.0.0.11", 53), timeout=5) as s:
        s.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", s.recv(2))[0]
        reply = b""
        while len(reply) < size:
            reply += s.recv(size - len(reply))
    assert reply[:2] == b"\x12\x34" and struct.unpack("!H", reply[6:8])[0] == 1
    return reply[-4:]


def test_names_traffic_and_isolation(lab: Lab) -> None:
    m = lab.manager
    m.create("front")
    m.create("back")
    web_ns = lab.sandbox("web")
    m.attach("web", "front", web_ns, name="web", aliases=["www"])
    lab.serve(web_ns, "web")
    lab.wait_tcp(m.endpoint("web", "front")["IPAddress"])
    client_ns = lab.sandbox("client")
    m.attach("client", "front", client_ns, name="client")
    for target in ("web", "www", "web.", "WEB", "web.front"):
        done = lab.fetch(client_ns, f"http://{target}/", 5)
        assert done.stdout == "hello from web\n", (target, done.returncode, done.stderr, done.stdout)
    done = lab.run(client_ns, "nslookup", "upstream.cais.test")
    assert "192.0.2.7" in done.stdout, done.stdout + done.stderr
    done = lab.run(client_ns, "nslookup", "nosuch.cais.test")
    assert done.returncode != 0
    own = UpstreamDns({"upstream.cais.test": "192.0.2.8"})  # a container's --dns: asked instead
    try:
        own_ns = lab.sandbox("own")
        m.attach("own", "front", own_ns, name="own", dns=[own.address])
        done = lab.run(own_ns, "nslookup", "upstream.cais.test")
        assert "192.0.2.8" in done.stdout and "192.0.2.7" not in done.stdout, done.stdout + done.stderr
        assert "web" in lab.run(own_ns, "nslookup", "web").stdout  # names are still answered here
    finally:
        own.close()
    web_ip = m.endpoint("web", "front")["IPAddress"]
    assert netns.run_in(client_ns, lambda: _tcp_query("www")) == socket.inet_aton(web_ip)  # DNS over TCP
    assert "web.front" in lab.run(client_ns, "nslookup", web_ip).stdout  # PTR, as docker's NAME.NETWORK

    other_ns = lab.sandbox("other")
    m.attach("other", "back", other_ns, name="other")
    done = lab.fetch(other_ns, f"http://{web_ip}/", 2)
    assert done.returncode != 0 and "hello" not in done.stdout
    assert lab.run(other_ns, "nslookup", "web").returncode != 0  # names do not leak across networks

    m.attach("other", "front", other_ns, name="other")  # connect at run time: now reachable
    done = lab.fetch(other_ns, "http://web/", 5)
    assert done.stdout == "hello from web\n", done.stderr
    m.detach("other", "front")
    done = lab.fetch(other_ns, f"http://{web_ip}/", 2)
    assert done.returncode != 0


def test_published_ports_tcp_udp_hairpin(lab: Lab) -> None:
    m = lab.manager
    ns = lab.sandbox("pub")
    ep = m.attach("pub", "bridge", ns, name="pub")
    lab.serve(ns, "pub")
    lab.wait_tcp(ep["IPAddress"])
    udp_ns = lab.sandbox("udp")
    uep = m.attach("udp", "bridge", udp_ns, name="udp")
    # busybox has no UDP server: a socket bound inside the container's namespace answers instead
    echo = netns.run_in(udp_ns, lambda: _udp_socket(uep["IPAddress"], 53))
    threading.Thread(target=_pong, args=(echo,), daemon=True).start()
    wanted = bindings({"80/tcp": parse_publish("18080:80")["80/tcp"] + parse_publish("127.0.0.1::80")["80/tcp"]})
    bound = m.publish("pub", wanted, ep["IPAddress"])
    assert [(b.host_ip, b.host_port) for b in bound[:2]] == [("", 18080), ("::", 18080)] and bound[2].host_port > 0
    assert _get("http://127.0.0.1:18080/") == "hello from pub\n"
    assert _get6("::1", 18080) == "hello from pub\n"  # IPv6 to an IPv4-only container: relayed, as docker-proxy
    assert _get(f"http://127.0.0.1:{bound[2].host_port}/") == "hello from pub\n"
    gateway = ep["Gateway"]  # an address of "the host"
    assert _get(f"http://{gateway}:18080/") == "hello from pub\n"
    with pytest.raises(OSError):
        _get(f"http://{gateway}:{bound[2].host_port}/")  # bound to 127.0.0.1 only

    # hairpin: another container on the bridge reaches it through the host's address
    assert lab.fetch(udp_ns, f"http://{gateway}:18080/", 5).stdout == "hello from pub\n"

    # a port in use: a clear error, and the first container's rules stay
    with pytest.raises(Conflict, match="18080"):
        m.publish("udp", bindings(parse_publish("18080:80")), uep["IPAddress"])
    with socket.socket() as taken:  # a port another program of the host listens on
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        with pytest.raises(Conflict, match=f"{taken.getsockname()[1]} failed: port is already allocated"):
            m.publish("udp", bindings(parse_publish(f"{taken.getsockname()[1]}:80")), uep["IPAddress"])
    with pytest.raises(InvalidConfig, match="only tcp and udp"):
        m.publish("udp", bindings(parse_publish("18084:53/sctp")), uep["IPAddress"])
    udp_bound = m.publish("udp", bindings(parse_publish("18053:53/udp")), uep["IPAddress"])
    assert [(b.proto, b.host_ip) for b in udp_bound] == [("udp", ""), ("udp", "::")]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):  # ::1: relayed by the proxy
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"ping\n", (host, 18053))
            assert s.recv(100) == b"pong:ping\n", host

    m.unpublish("pub")
    with pytest.raises(OSError):
        _get("http://127.0.0.1:18080/")
    rules = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
    assert "18080" not in rules and "18053" in rules


def test_none_and_internal(lab: Lab) -> None:
    m = lab.manager
    done = lab.run(lab.sandbox("lonely"), "ip", "-o", "link")
    assert len(done.stdout.splitlines()) == 1 and ": lo:" in done.stdout  # loopback only
    m.create("private", internal=True)
    ns = lab.sandbox("inner")
    m.attach("inner", "private", ns, name="inner")
    gateway = m.endpoint("inner", "private")["Gateway"]
    out = lab.run(ns, "ip", "route").stdout
    assert "default" not in out
    # an outside address ("the host's" other interface) is unreachable
    outside = lab.sandbox("outside")
    m.attach("outside", "bridge", outside, name="outside")
    lab.serve(outside, "outside")
    lab.wait_tcp(m.endpoint("outside", "bridge")["IPAddress"])
    done = lab.fetch(ns, f"http://{m.endpoint('outside', 'bridge')['IPAddress']}/", 2)
    assert done.returncode != 0
    assert gateway


def test_dual_stack(lab: Lab) -> None:
    m = lab.manager
    rec = m.create("six", enable_ipv6=True, ipam_config=[{"Subnet": "fd00:ca15::/64"}])
    assert [c["Subnet"] for c in rec["IPAM"]["Config"]][1] == "fd00:ca15::/64"  # plus a default IPv4 pool
    web_ns = lab.sandbox("web6")
    ep = m.attach("web6", "six", web_ns, name="web6")
    assert ep["GlobalIPv6Address"] == "fd00:ca15::2" and ep["IPv6Gateway"] == "fd00:ca15::1"
    lab.serve(web_ns, "web6")
    lab.wait_tcp(ep["IPAddress"])
    client = lab.sandbox("client6")
    m.attach("client6", "six", client, name="client6")
    assert lab.fetch(client, "http://[fd00:ca15::2]/").stdout == "hello from web6\n"
    assert "fd00:ca15::2" in lab.run(client, "nslookup", "-type=AAAA", "web6").stdout
    assert "web6.six" in lab.run(client, "nslookup", "fd00:ca15::2").stdout  # PTR in ip6.arpa
    assert "default via fd00:ca15::1" in lab.run(client, "ip", "-6", "route").stdout
    fixed = m.attach("fixed6", "six", lab.sandbox("fixed6"), name="fixed6", ip6="fd00:ca15::99")
    assert fixed["GlobalIPv6Address"] == "fd00:ca15::99"
    with pytest.raises(Conflict, match="in use"):
        m.attach("again6", "six", lab.sandbox("again6"), name="again6", ip6="fd00:ca15::99")
    assert not any(o == "again6" for p in m.ipam.pools(rec["Id"]) for o in p.allocated.values())
    assert "fd00:ca15::/64" in subprocess.run(["nft", "list", "table", "ip6", "cais"], capture_output=True,
                                              text=True).stdout
    with pytest.raises(InvalidConfig, match="IPv6"):
        m.create("half", ipam_config=[{"Subnet": "fd00:ca16::/64"}])
    ula = ipaddress.ip_network(m.create("ula", enable_ipv6=True)["IPAM"]["Config"][1]["Subnet"])
    assert ula.prefixlen == 64 and ula.subnet_of(ipaddress.ip_network("fd00::/8"))  # docker 27's default pool
    again = ipaddress.ip_network(m.create("ula2", enable_ipv6=True)["IPAM"]["Config"][1]["Subnet"])
    assert again != ula and ipaddress.ip_network(f"{again.network_address}/48", strict=False).overlaps(ula)


def test_bad_input(lab: Lab) -> None:
    m = lab.manager
    m.create("one", ipam_config=[{"Subnet": "10.77.0.0/16"}])
    with pytest.raises(Conflict, match="overlaps"):
        m.create("two", ipam_config=[{"Subnet": "10.77.3.0/24"}])
    with pytest.raises(InvalidConfig, match="invalid subnet"):
        m.create("two", ipam_config=[{"Subnet": "10.300.0.0/16"}])
    with pytest.raises(InvalidConfig, match="it should be 10.78.0.0/16"):
        m.create("two", ipam_config=[{"Subnet": "10.78.0.1/16"}])
    with pytest.raises(InvalidConfig, match="gateway"):
        m.create("two", ipam_config=[{"Subnet": "10.78.0.0/16", "Gateway": "10.79.0.1"}])
    with pytest.raises(Conflict, match="already exists"):
        m.create("one")
    assert sorted(n["Name"] for n in m.list()) == ["bridge", "host", "none", "one"]
    ns = lab.sandbox("x")
    m.attach("x", "one", ns, name="x", ip="10.77.0.50")
    assert m.endpoint("x", "one")["IPAddress"] == "10.77.0.50"
    y = lab.sandbox("y")
    with pytest.raises(Conflict, match="in use"):
        m.attach("y", "one", y, name="y", ip="10.77.0.50")
    with pytest.raises(Conflict, match="active endpoints"):
        m.remove("one")
    with pytest.raises(Conflict, match="pre-defined"):
        m.remove("bridge")
    with pytest.raises(InvalidConfig):
        parse_publish("80:80:80:80")
    m.create("aux", ipam_config=[{"Subnet": "10.82.0.0/29", "AuxiliaryAddresses": {"router": "10.82.0.2"}}])
    assert m.get("aux")["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"router": "10.82.0.2"}
    assert m.attach("a1", "aux", lab.sandbox("a1"), name="a1")["IPAddress"] == "10.82.0.3"  # .1 gateway, .2 aux
    with pytest.raises(InvalidConfig, match="reserved"):
        m.attach("a2", "aux", lab.sandbox("a2"), name="a2", ip="10.82.0.2")
    with pytest.raises(InvalidConfig, match="auxiliary address"):
        m.create("aux2", ipam_config=[{"Subnet": "10.83.0.0/24", "AuxiliaryAddresses": {"r": "10.84.0.2"}}])
    m.detach("a1", "aux")
    m.remove("aux")
    assert parse_add_host("gw:host-gateway", m.host_gateway()) == ("gw", m.get("bridge")["IPAM"]["Config"][0]["Gateway"])
    with pytest.raises(InvalidConfig, match="host-gateway"):
        parse_add_host("gw:host-gateway", "")  # no default bridge (caisd --bridge none)
    for bad in ("nocolon", ":10.0.0.1", "x:10.0.0.300"):
        with pytest.raises(InvalidConfig, match="add-host"):
            parse_add_host(bad)
    m.detach("x", "one")
    m.remove("one")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "caisv" not in links and "cais-" not in links


def test_restart_reapplies_rules_without_duplicates(lab: Lab, sandbox: str) -> None:
    import os

    from cais.network.manager import NetworkManager

    m = lab.manager
    m.create("again")
    ns = lab.sandbox("c1")
    m.attach("c1", "again", ns, name="c1")
    before = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
    # a "crash": a new manager on the same data, the container c1 still alive, c2's record stale
    again = NetworkManager(os.path.join(sandbox, "data"), os.path.join(sandbox, "run"), upstream_dns=[])
    again.start(alive={"c1"})
    again.start(alive={"c1"})
    after = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
    assert before == after
    again.start(alive=set())  # c1 died during the crash: its address is free again
    assert again.get("again")["Cais"]["Endpoints"] == {}
    assert not any(p.allocated for p in again.ipam.pools(again.get("again")["Id"]))


@pytest.mark.parametrize("br_netfilter", ["1", "0"])
def test_self_hairpin(lab: Lab, br_netfilter: str) -> None:
    """A container reaches its own published port on a host address, with br_netfilter on or off.

    With bridge-nf-call-iptables (per network namespace) the DNAT'ed frame is bridged back out of
    the port it came in by: only a hairpin port lets it; without, it is routed and masqueraded.
    """
    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if not os.path.exists(knob):
        if br_netfilter == "1":
            pytest.skip("br_netfilter is not loaded")
    else:
        with open(knob, "w") as f:  # the sandbox's own copy of the sysctl
            f.write(br_netfilter)
    subprocess.run(["ip", "addr", "add", "198.51.100.1/32", "dev", "lo"], check=True)  # "the host's address"
    m = lab.manager
    ns = lab.sandbox("self")
    ep = m.attach("self", "bridge", ns, name="self")
    m.publish("self", bindings(parse_publish("18090:80")), ep["IPAddress"])
    script = ("httpd -p 80 -h /www && "
              f"for a in {ep['Gateway']} 198.51.100.1; do timeout 5 wget -q -O - http://$a:18090/ || exit 1; done")
    done = lab.run(ns, "sh", "-c", script)
    assert done.stdout == "hello from c\n" * 2, done.stderr
    bridge_links = subprocess.run(["bridge", "-d", "link", "show"], capture_output=True, text=True).stdout
    assert "hairpin on" in bridge_links


def test_published_ports_ipv6(lab: Lab) -> None:
    """On an --ipv6 network a port is published on both families; IPv6 host addresses work too."""
    subprocess.run(["ip", "addr", "add", "2001:db8:ca15::1/128", "dev", "lo", "nodad"], check=True)  # "the host's"
    m = lab.manager
    m.create("pub6", enable_ipv6=True, ipam_config=[{"Subnet": "fd00:ca19::/64"}])
    ns = lab.sandbox("web")
    ep = m.attach("web", "pub6", ns, name="web")
    lab.serve(ns, "web")
    lab.wait_tcp(ep["IPAddress"])
    wanted = bindings({"80/tcp": parse_publish("18086:80")["80/tcp"] + parse_publish("[::1]::80")["80/tcp"]})
    bound = m.publish("web", wanted, ep["IPAddress"], ep["GlobalIPv6Address"])
    assert [(b.host_ip, b.host_port) for b in bound[:2]] == [("", 18086), ("::", 18086)]  # dual-stack default
    assert bound[2].host_ip == "::1" and bound[2].host_port > 0 and len(bound) == 3
    for host in ("::1", "2001:db8:ca15::1", ep["IPv6Gateway"]):
        assert _get6(host, 18086) == "hello from web\n"
    assert _get("http://127.0.0.1:18086/") == "hello from web\n"
    assert _get6("::1", bound[2].host_port) == "hello from web\n"
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{bound[2].host_port}/")  # published on ::1 only
    rules = subprocess.run(["nft", "list", "table", "ip6", "cais"], capture_output=True, text=True).stdout
    assert f"dnat to [{ep['GlobalIPv6Address']}]:80" in rules and "ip6 daddr ::1" in rules

    # other containers (hairpin) and the container itself reach it on the host's IPv6 addresses
    client = lab.sandbox("client")
    m.attach("client", "pub6", client, name="client")
    assert lab.fetch(client, "http://[2001:db8:ca15::1]:18086/").stdout == "hello from web\n"
    script = ("httpd -p 8080 -h /www && "
              "timeout 5 wget -q -O - http://[2001:db8:ca15::1]:18087/ || exit 1")
    m.publish("client", bindings(parse_publish("18087:8080")), m.endpoint("client", "pub6")["IPAddress"],
              m.endpoint("client", "pub6")["GlobalIPv6Address"])
    assert lab.run(client, "sh", "-c", script).stdout == "hello from c\n"

    # an IPv6 port in use: a clear error naming it, nothing half-published
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Conflict, match=rf"Bind for \[::\]:{port} failed"):
            m.publish("client", bindings(parse_publish(f"{port}:80")), m.endpoint("client", "pub6")["IPAddress"],
                      m.endpoint("client", "pub6")["GlobalIPv6Address"])
    assert str(port) not in subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    m.unpublish("web")
    with pytest.raises(OSError):
        _get6("::1", 18086)


def test_bridge_driver_options(lab: Lab) -> None:
    """enable_icc=false: containers of one bridge cannot talk (published ports still work);
    enable_ip_masquerade=false: no masquerade of the subnet."""
    from cais.network.manager import HOST_BINDING_OPT, ICC_OPT, MASQUERADE_OPT

    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if not os.path.exists(knob):
        pytest.skip("enable_icc=false needs br_netfilter")
    with open(knob, "w") as f:
        f.write("1")
    m = lab.manager
    with pytest.raises(InvalidConfig, match="enable_icc"):
        m.create("bad", options={ICC_OPT: "maybe"})
    with pytest.raises(InvalidConfig, match="host_binding_ipv4"):
        m.create("bad", options={HOST_BINDING_OPT: "localhost"})
    rec = m.create("noicc", options={ICC_OPT: "false", MASQUERADE_OPT: "0", HOST_BINDING_OPT: "127.0.0.1"},
                   ipam_config=[{"Subnet": "10.81.0.0/24"}])
    web_ns = lab.sandbox("web")
    ep = m.attach("web", "noicc", web_ns, name="web")
    lab.serve(web_ns, "web")
    lab.wait_tcp(ep["IPAddress"])  # the host reaches it
    wanted = bindings({"80/tcp": parse_publish("18091:80")["80/tcp"] + parse_publish("0.0.0.0:18092:80")["80/tcp"]})
    bound = m.publish("web", wanted, ep["IPAddress"])
    assert [(b.host_ip, b.host_port) for b in bound] == [("127.0.0.1", 18091), ("0.0.0.0", 18092)]  # host_binding_ipv4
    assert _get("http://127.0.0.1:18091/") == "hello from web\n"
    client = lab.sandbox("client")
    m.attach("client", "noicc", client, name="client")
    assert lab.fetch(client, f"http://{ep['IPAddress']}/", 2).returncode != 0
    assert lab.fetch(client, f"http://{ep['Gateway']}:18092/").stdout == "hello from web\n"
    assert lab.fetch(client, f"http://{ep['Gateway']}:18091/", 2).returncode != 0  # 127.0.0.1 only
    rules = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
    bridge = rec["Cais"]["Bridge"]
    assert f'iifname "{bridge}" oifname "{bridge}" drop' in rules
    assert "ip saddr 10.81.0.0/24 oifname" not in rules and "ip saddr 172.17.0.0/16 oifname" in rules
