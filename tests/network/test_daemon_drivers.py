"""macvlan networks and legacy --link through caisd, with the docker CLI and docker-py, compared
with dockerd 20.10 running in the same sandbox namespace (each daemon on a parent of its own)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from cais.network import netns
from cais.network.bridge import iproute, link_index
from tests.caisd import Caisd, caisd
from tests.network.conftest import UpstreamDns, http_get, sandboxed
from tests.peers import Dockerd, dockerd

pytestmark = pytest.mark.peers

WEB = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
Peer = Caisd | Dockerd


def _veth(name: str) -> None:
    """A veth pair NAME/NAMEx in the sandbox, both ends up: NAME is a parent for macvlan networks."""
    def make() -> None:
        with iproute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "x"})
            for end in (name, name + "x"):
                ipr.link("set", index=link_index(ipr, end), state="up")
    netns.run_in(None, make)


def _links() -> set[str]:
    def names() -> set[str]:
        with iproute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return netns.run_in(None, names)


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[Caisd, Dockerd]]:
    """caisd and dockerd (with caisd's busybox and a default bridge, no firewall) in one sandbox."""
    with sandboxed("cais-nd"):
        upstream = UpstreamDns({"upstream.cais.test": "192.0.2.7"})
        _veth("cais-nd-c0")
        _veth("cais-nd-d0")
        try:
            with caisd(network_args=["--dns", upstream.address], prefix="cais-nd") as d:
                image = d.cais("save", "busybox").stdout
                with dockerd(extra=["--bridge=docker0"]) as dk:
                    dk.docker("load", input=image)
                    yield d, dk
        finally:
            upstream.close()


def _out(d: Peer, *args: str) -> str:
    done = d.docker(*args, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
    return done.stdout.decode()


def _err(d: Peer, *args: str) -> str:
    done = d.docker(*args, check=False)
    assert done.returncode != 0, done.stdout
    return done.stderr.decode()


def _network_shape(d: Peer, name: str) -> dict:
    info = json.loads(_out(d, "network", "inspect", name))[0]
    for key in ("Id", "Created", "Name", "EnableIPv4", "Containers"):  # EnableIPv4: API 1.47+, dockerd 20.10 speaks 1.41
        info.pop(key, None)
    info["Options"].pop("parent")
    return info


def test_macvlan_as_dockerd(peers: tuple[Caisd, Dockerd]) -> None:
    d, dk = peers
    nets: list[tuple[Peer, str]] = [(d, "cais-nd-c0"), (dk, "cais-nd-d0")]
    seen: dict[str, list] = {"shape": [], "inside": [], "endpoint": [], "errors": []}
    try:
        for peer, parent in nets:
            _out(peer, "network", "create", "-d", "macvlan", "--subnet", "10.71.0.0/24", "--gateway", "10.71.0.254",
                 "-o", f"parent={parent}", "-o", "macvlan_mode=bridge", "mvnet")
            seen["shape"].append(_network_shape(peer, "mvnet"))
            _out(peer, "run", "-d", "--name", "mvweb", "--hostname", "mvweb", "--network", "mvnet", "--ip",
                 "10.71.0.10", "-p", "18099:80", "busybox", "sh", "-c", WEB)
            settings = json.loads(_out(peer, "inspect", "mvweb"))[0]["NetworkSettings"]
            endpoint = settings["Networks"]["mvnet"]
            seen["endpoint"].append({**{k: endpoint[k] for k in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress",
                                                                 "IPAMConfig", "IPv6Gateway")},
                                     "Ports": settings["Ports"], "IP": settings["IPAddress"]})
            inside = _out(peer, "run", "--rm", "--network", "mvnet", "--ip", "10.71.0.11", "busybox", "sh", "-c",
                          "cat /sys/class/net/eth0/address; ip route; cat /etc/resolv.conf; "
                          "timeout 10 wget -q -O - http://mvweb/ || exit 1")
            seen["inside"].append(inside)
            seen["errors"].append([_err(peer, "network", "create", "-d", "macvlan", "-o", f"parent={parent}",
                                        "again").replace(f"{parent}", "P").split("network ")[0],
                                   _err(peer, "network", "create", "-d", "macvlan", "-o", "macvlan_mode=foo", "x"),
                                   _err(peer, "network", "create", "-d", "macvlan", "-o", "parent=lo", "x"),
                                   _err(peer, "network", "create", "-d", "macvlan", "-o", "parent=cais-nd-nope", "x"),
                                   _err(peer, "network", "create", "-d", "ipvlan", "-o", "ipvlan_mode=l4", "x")])
        for key, (mine, theirs) in seen.items():
            assert mine == theirs, key
        assert "hello from mvweb" in seen["inside"][0] and "default via 10.71.0.254 dev eth0" in seen["inside"][0]
        with pytest.raises(AssertionError):  # -p means nothing on a macvlan network, for dockerd too
            http_get("http://127.0.0.1:18099/", wait=0)
        assert "is already using parent interface cais-nd-c0" in _err(
            d, "network", "create", "-d", "macvlan", "-o", "parent=cais-nd-c0", "again")
    finally:
        for peer, _ in nets:
            peer.docker("rm", "-f", "mvweb", check=False)
            peer.docker("network", "rm", "mvnet", check=False)


def test_macvlan_docker_py_and_own_parent(peers: tuple[Caisd, Dockerd]) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    d, _ = peers
    client = docker.DockerClient(base_url=d.host, version="1.43")
    before = _links()
    net = client.networks.create("pymv", driver="macvlan", options={"parent": "cais-nd-c0"},
                                 ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.72.0.0/24")]))
    solo = client.networks.create("solo", driver="macvlan", internal=True)
    try:
        assert net.attrs["Driver"] == "macvlan" and net.attrs["Options"] == {"parent": "cais-nd-c0"}
        own = "caisdm-" + solo.id[:8]
        assert _links() == before | {own}  # no parent: one made for the network
        box = client.containers.run("busybox", ["sh", "-c", WEB], name="pymvbox", hostname="pymvbox",
                                    network="solo", detach=True)
        try:
            out = client.containers.run("busybox", ["sh", "-c", "ip route; timeout 10 wget -q -O - http://pymvbox/"],
                                        network="solo", remove=True).decode()
            assert "hello from pymvbox" in out and "default" not in out  # internal: no way out
            d.kill(signal.SIGKILL)  # a crash: the network, its link and the running container's DNS come back
            d.start()
            client = docker.DockerClient(base_url=d.host, version="1.43")
            out = client.containers.run("busybox", ["sh", "-c", "timeout 10 wget -q -O - http://pymvbox/"],
                                        network="solo", remove=True).decode()
            assert out == "hello from pymvbox\n" and own in _links()
            net, box = client.networks.get("pymv"), client.containers.get("pymvbox")
            net.connect(box, ipv4_address="10.72.0.50")
            box.reload()
            assert box.attrs["NetworkSettings"]["Networks"]["pymv"]["IPAddress"] == "10.72.0.50"
            assert "10.72.0.50/24" in box.exec_run(["ip", "addr"]).output.decode()
            net.disconnect(box)
            assert "10.72.0.50" not in box.exec_run(["ip", "addr"]).output.decode()
        finally:
            box.remove(force=True)
    finally:
        net.remove()
        solo.remove()
    assert _links() == before  # the network's own link went with it, the given parent stays


def _link_view(d: Peer, *flags: str) -> tuple[list[str], str, list | None]:
    """(the link variables, the hosts lines of the links, inspect's HostConfig.Links) of a container
    linked to `lnkweb`; addresses and ids replaced by names, so that two daemons compare."""
    child = json.loads(_out(d, "inspect", "lnkweb"))[0]
    ip = child["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    out = _out(d, "run", "--name", "lnkcli", *flags, "busybox", "sh", "-c", "env; echo ---; cat /etc/hosts")
    env, _, hosts = out.partition("---\n")
    links = json.loads(_out(d, "inspect", "lnkcli"))[0]["HostConfig"]["Links"]
    d.docker("rm", "-f", "lnkcli", check=False)
    keep = sorted(line.replace(ip, "IP") for line in env.splitlines() if line.split("=")[0].startswith(("WEB", "LNKWEB")))
    lines = "".join(line.replace(ip, "IP") + "\n" for line in hosts.splitlines() if ip in line)
    return keep, lines, links


def test_links_as_dockerd(peers: tuple[Caisd, Dockerd]) -> None:
    d, dk = peers
    views = []
    try:
        for peer in (d, dk):
            _out(peer, "run", "-d", "--name", "lnkweb", "--hostname", "webhost", "-e", "COLOR=blue", "-e", "A=b=c",
                 "--expose", "80", "--expose", "81", "--expose", "82", "--expose", "53/udp", "--expose", "9000",
                 "busybox", "sleep", "300")
            views.append([_link_view(peer, "--link", "lnkweb:web"), _link_view(peer, "--link", "lnkweb"),
                          _err(peer, "run", "--rm", "--link", "nosuch:x", "busybox", "true").strip(),
                          _err(peer, "run", "--rm", "--network", "host", "--link", "lnkweb:w", "busybox", "true")])
            _out(peer, "network", "create", "lnkuser")
            try:  # a user-defined network: the link is a name the embedded DNS answers, nothing else
                _out(peer, "network", "connect", "lnkuser", "lnkweb")
                out = _out(peer, "run", "--network", "lnkuser", "--name", "lnku", "--link", "lnkweb:alias1",
                           "busybox", "sh", "-c", "env | grep -c ALIAS1_ ; nslookup alias1 127.0.0.11 >/dev/null && echo ok")
                views[-1].append(out)
                views[-1].append(json.loads(_out(peer, "inspect", "lnku"))[0]["HostConfig"]["Links"])
            finally:
                peer.docker("rm", "-f", "lnku", check=False)
                peer.docker("network", "disconnect", "lnkuser", "lnkweb", check=False)
                peer.docker("network", "rm", "lnkuser", check=False)
        mine, theirs = views
        assert mine[0] == theirs[0]
        assert mine[1] == theirs[1]
        env, hosts, links = mine[0]
        assert "WEB_PORT=udp://IP:53" in env and "WEB_ENV_COLOR=blue" in env and "WEB_NAME=/lnkcli/web" in env
        assert "WEB_PORT_80_TCP_START=tcp://IP:80" in env and "WEB_PORT_80_TCP_END=tcp://IP:82" in env
        assert hosts == "IP\tweb webhost lnkweb\n" and links == ["/lnkweb:/lnkcli/web"]
        assert "could not get container for nosuch" in mine[2] and "could not get container for nosuch" in theirs[2]
        assert "host type networking can't be used with links" in mine[3]
        assert "host type networking can't be used with links" in theirs[3]
        assert mine[4:] == theirs[4:] == ["0\nok\n", None]
        out = d.cais("run", "--rm", "--link", "lnkweb:web", "busybox", "sh", "-c", "echo $WEB_NAME; grep -c web /etc/hosts")
        assert out.stdout.decode().split("\n")[1:] == ["1", ""] and out.stdout.startswith(b"/")  # the cais CLI's --link
        _out(d, "network", "create", "lnkuser2")
        try:
            _out(d, "network", "connect", "lnkuser2", "lnkweb")
            out = d.cais("run", "--rm", "--network", "lnkuser2", "--link", "lnkweb:alias2", "busybox",
                         "nslookup", "alias2", "127.0.0.11", check=False)
            assert out.returncode == 0, out.stdout + out.stderr
        finally:
            d.docker("network", "disconnect", "lnkuser2", "lnkweb", check=False)
            d.docker("network", "rm", "lnkuser2", check=False)
        # a linked container that does not run: the link stops the start, as with dockerd
        for peer in (d, dk):
            _out(peer, "create", "--name", "lnkcli2", "--link", "lnkweb:web", "busybox", "true")
            _out(peer, "stop", "-t", "0", "lnkweb")
            assert "Cannot link to a non running container: /lnkweb AS /lnkcli2/web" in _err(peer, "start", "lnkcli2")
            _out(peer, "run", "-d", "--name", "lnkelse", "--network", "none", "busybox", "sleep", "300")
            _out(peer, "create", "--name", "lnkcli3", "--link", "lnkelse", "busybox", "true")
            assert "Cannot link to /lnkelse, as it does not belong to the default network" in _err(peer, "start",
                                                                                                   "lnkcli3")
            _out(peer, "rename", "lnkweb", "lnkweb9")  # inspect names the containers by their names of now
            assert json.loads(_out(peer, "inspect", "lnkcli2"))[0]["HostConfig"]["Links"] == ["/lnkweb9:/lnkcli2/web"]
    finally:
        for peer in (d, dk):
            peer.docker("rm", "-f", "lnkweb", "lnkweb9", "lnkcli", "lnkcli2", "lnkcli3", "lnkelse", check=False)
