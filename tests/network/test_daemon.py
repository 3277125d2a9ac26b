"""caisd with bridge networking, driven by the real docker CLI and docker-py, inside a sandbox.

caisd (and its supervisor, and so every container) starts inside the sandbox namespace; the
embedded DNS forwards to a resolver the test runs on the sandbox's loopback.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.caisd import Caisd, caisd
from tests.network.conftest import UpstreamDns, http_get, sandboxed

pytestmark = pytest.mark.peers

WEB = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def d() -> Iterator[Caisd]:
    with sandboxed():
        upstream = UpstreamDns({"upstream.cais.test": "192.0.2.7"})
        try:
            with caisd(network_args=["--dns", upstream.address]) as daemon:
                yield daemon
        finally:
            upstream.close()


def _out(d: Caisd, *args: str, check: bool = True) -> str:
    done = d.docker(*args, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
    return done.stdout.decode()


def _err(d: Caisd, *args: str) -> str:
    done = d.docker(*args, check=False)
    assert done.returncode != 0, done.stdout
    return done.stderr.decode()



def _wget(d: Caisd, network: str, url: str, seconds: int = 5) -> subprocess.CompletedProcess[bytes]:
    return d.docker("run", "--rm", "--network", network, "busybox", "sh", "-c",
                    f"timeout {seconds} wget -O - {url} || exit 1", check=False)


def test_user_defined_network_by_name(d: Caisd) -> None:
    net_id = _out(d, "network", "create", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.254", "front").strip()
    try:
        info = json.loads(_out(d, "network", "inspect", "front"))[0]
        assert info["Id"] == net_id and info["Driver"] == "bridge"
        assert info["IPAM"]["Config"] == [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.254"}]
        assert "front" in _out(d, "network", "ls", "--format", "{{.Name}}").split()
        _out(d, "run", "-d", "--name", "web", "--hostname", "web", "--network", "front", "--network-alias", "www",
             "--ip", "10.99.0.10", "busybox", "sh", "-c", WEB)
        settings = json.loads(_out(d, "inspect", "web"))[0]["NetworkSettings"]["Networks"]["front"]
        assert settings["IPAddress"] == "10.99.0.10" and settings["Gateway"] == "10.99.0.254"
        assert settings["MacAddress"] == "02:42:0a:63:00:0a"
        containers = json.loads(_out(d, "network", "inspect", "front"))[0]["Containers"]
        assert [c["IPv4Address"] for c in containers.values()] == ["10.99.0.10/24"]
        for name in ("web", "www"):
            done = _wget(d, "front", f"http://{name}/")
            assert done.stdout == b"hello from web\n", done.stderr
        done = d.docker("run", "--rm", "--network", "front", "busybox", "nslookup", "upstream.cais.test", check=False)
        assert b"192.0.2.7" in done.stdout, done.stdout + done.stderr
        resolv = _out(d, "run", "--rm", "--network", "front", "--dns-search", "cais.test", "busybox",
                      "cat", "/etc/resolv.conf")
        assert "nameserver 127.0.0.11" in resolv and "search cais.test" in resolv
        hosts = _out(d, "run", "--rm", "--add-host", "db.cais.test:10.1.2.3", "--add-host", "gw:host-gateway",
                     "--add-host", "v6=[fd00::5]", "--hostname", "h1", "busybox", "cat", "/etc/hosts", "/etc/hostname")
        bridge_gw = json.loads(_out(d, "network", "inspect", "bridge"))[0]["IPAM"]["Config"][0]["Gateway"]
        assert "10.1.2.3\tdb.cais.test" in hosts and hosts.endswith("h1\n")
        assert f"{bridge_gw}\tgw\n" in hosts and "fd00::5\tv6\n" in hosts
        assert "invalid IP address in add-host" in _err(d, "run", "--rm", "--add-host", "x:nowhere", "busybox", "true")

        # another network: isolated; connect at run time: reachable; disconnect: isolated again
        _out(d, "network", "create", "back")
        _out(d, "run", "-d", "--name", "other", "--network", "back", "busybox", "sleep", "300")
        probe = "timeout 2 wget -O - http://10.99.0.10/ || exit 1"
        assert d.docker("exec", "other", "sh", "-c", probe, check=False).returncode != 0
        _out(d, "network", "connect", "front", "other")
        assert _out(d, "exec", "other", "sh", "-c", "timeout 5 wget -O - http://web/ || exit 1") == "hello from web\n"
        _out(d, "network", "disconnect", "front", "other")
        assert d.docker("exec", "other", "sh", "-c", probe, check=False).returncode != 0

        assert "active endpoints" in _err(d, "network", "rm", "front")
        assert "overlaps" in _err(d, "network", "create", "--subnet", "10.99.0.128/25", "clash")
        assert "invalid subnet" in _err(d, "network", "create", "--subnet", "10.99.0.300/24", "bad")
        assert "clash" not in _out(d, "network", "ls")
    finally:
        d.docker("rm", "-f", "web", "other", check=False)
        d.docker("network", "rm", "front", "back", check=False)
    assert "front" not in _out(d, "network", "ls")


def test_published_ports_and_port_command(d: Caisd) -> None:
    try:
        _out(d, "run", "-d", "--name", "pub", "--hostname", "pub", "-p", "18081:80", "-p", "127.0.0.1::80",
             "busybox", "sh", "-c", WEB)
        assert http_get("http://127.0.0.1:18081/") == "hello from pub\n"
        assert http_get("http://[::1]:18081/") == "hello from pub\n"  # [::]:18081 too, relayed as docker-proxy does
        ports = _out(d, "port", "pub").splitlines()
        assert "80/tcp -> 0.0.0.0:18081" in ports and "80/tcp -> [::]:18081" in ports
        local = [p for p in ports if "127.0.0.1" in p][0].rpartition(":")[2]
        assert http_get(f"http://127.0.0.1:{local}/") == "hello from pub\n"
        gateway = json.loads(_out(d, "network", "inspect", "bridge"))[0]["IPAM"]["Config"][0]["Gateway"]
        assert _wget(d, "bridge", f"http://{gateway}:18081/").stdout == b"hello from pub\n"  # hairpin
        assert "18081" in _out(d, "ps", "--format", "{{.Ports}}")
        assert "already allocated" in _err(d, "run", "-d", "--name", "dup", "-p", "18081:80", "busybox", "sleep", "9")
        d.docker("rm", "-f", "dup", check=False)

        # -P: every exposed port on a random host port
        _out(d, "run", "-d", "--name", "all", "--hostname", "all", "-P", "--expose", "80", "--expose", "9000/udp",
             "busybox", "sh", "-c", WEB)
        published = json.loads(_out(d, "inspect", "all"))[0]["NetworkSettings"]["Ports"]
        assert set(published) == {"80/tcp", "9000/udp"}
        assert http_get(f"http://127.0.0.1:{published['80/tcp'][0]['HostPort']}/") == "hello from all\n"
        _out(d, "rm", "-f", "all")

        # a crash: caisd killed, restarted; rules re-created without duplicates, the port still works
        before = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
        d.kill(signal.SIGKILL)
        d.start()
        after = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
        assert after == before and after.count("18081") == 1
        assert http_get("http://127.0.0.1:18081/") == "hello from pub\n"
        # a clean shutdown removes the table (containers keep running); the next start restores it
        d.kill(signal.SIGTERM)
        assert subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True).returncode != 0
        d.start()
        assert http_get("http://127.0.0.1:18081/") == "hello from pub\n"
        _out(d, "rm", "-f", "pub")
        rules = subprocess.run(["nft", "list", "table", "ip", "cais"], capture_output=True, text=True).stdout
        assert "18081" not in rules
    finally:
        d.docker("rm", "-f", "pub", "dup", check=False)


def test_none_host_container_and_internal(d: Caisd) -> None:
    mac = _out(d, "run", "--rm", "--mac-address", "02:42:CA:15:00:09", "busybox", "cat", "/sys/class/net/eth0/address")
    assert mac == "02:42:ca:15:00:09\n"
    assert "invalid MAC address" in _err(d, "run", "--rm", "--mac-address", "03:42:ca:15:00:09", "busybox", "true")
    assert "conflicting options" in _err(d, "run", "--rm", "--network", "host", "--mac-address", "02:42:ca:15:00:09",
                                         "busybox", "true")
    links = _out(d, "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").splitlines()
    assert len(links) == 1 and ": lo:" in links[0]
    assert "cais0" in _out(d, "run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    try:
        _out(d, "run", "-d", "--name", "base", "--hostname", "base", "busybox", "sh", "-c", WEB)
        base_ip = json.loads(_out(d, "inspect", "base"))[0]["NetworkSettings"]["IPAddress"]
        assert http_get(f"http://{base_ip}/") == "hello from base\n"  # httpd is up
        out = _out(d, "run", "--rm", "--network", "container:base", "busybox", "sh", "-c",
                   "timeout 10 wget -q -O - http://127.0.0.1/ || exit 1")
        assert out == "hello from base\n"
        shared = _out(d, "run", "--rm", "--network", "container:base", "busybox", "sh", "-c", "hostname; cat /etc/hosts")
        assert shared.startswith("base\n") and f"{base_ip}\tbase" in shared  # the other's hostname and files
        for flags in (["--hostname", "x"], ["--dns", "192.0.2.1"], ["--add-host", "a:192.0.2.1"], ["-p", "80"]):
            assert "conflicting options" in _err(d, "run", "--rm", "--network", "container:base", *flags,
                                                 "busybox", "true")
        _out(d, "network", "create", "--internal", "sealed")
        assert "default" not in _out(d, "run", "--rm", "--network", "sealed", "busybox", "ip", "route")
        assert _wget(d, "sealed", f"http://{base_ip}/", 2).returncode != 0
    finally:
        d.docker("rm", "-f", "base", check=False)
        d.docker("network", "rm", "sealed", check=False)


def test_docker_py(d: Caisd) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    client = docker.DockerClient(base_url=d.host, version="1.43")
    net = client.networks.create("pynet", driver="bridge",
                                 ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.98.0.0/24")]),
                                 labels={"cais.test": "1"})
    try:
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.98.0.0/24"
        assert [n.name for n in client.networks.list(filters={"label": "cais.test=1"})] == ["pynet"]
        box = client.containers.create("busybox", ["sleep", "300"], name="pybox")
        try:
            net.connect(box, ipv4_address="10.98.0.77")  # stored while created, plugged in at start
            box.start()
            box.reload()
            assert box.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"] == "10.98.0.77"
            assert box.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            net.disconnect(box)
            net.connect(box, aliases=["pyalias"])
            net.reload()
            assert list(net.attrs["Containers"]) == [box.id]
            box.reload()
            assert box.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"].startswith("10.98.0.")
            net.disconnect(box)
            net.reload()
            assert net.attrs["Containers"] == {}
        finally:
            box.remove(force=True)
        with pytest.raises(docker.errors.APIError, match="pre-defined"):
            client.networks.get("bridge").remove()
    finally:
        net.remove()
    assert "pynet" not in (client.networks.prune().get("NetworksDeleted") or [])


def test_cais_cli_and_garbage(d: Caisd) -> None:
    def cais(*args: str) -> str:
        return d.cais(*args).stdout.decode()

    cais("network", "create", "--subnet", "10.97.0.0/24", "--label", "k=v", "clinet")
    try:
        assert "clinet" in cais("network", "ls", "--filter", "label=k=v")
        assert json.loads(cais("network", "inspect", "clinet"))[0]["Labels"] == {"k": "v"}
        cais("run", "-d", "--name", "clibox", "--network", "clinet", "--network-alias", "alias1",
             "-p", "18082:80", "--hostname", "clibox", "busybox", "sh", "-c", WEB)
        assert cais("port", "clibox", "80").split() == ["0.0.0.0:18082", "[::]:18082"]
        assert http_get("http://127.0.0.1:18082/") == "hello from clibox\n"
        done = d.cais("network", "rm", "clinet", check=False)
        assert done.returncode != 0 and b"active endpoints" in done.stderr and b"Traceback" not in done.stderr
        assert cais("run", "--rm", "--network", "clinet", "--mac-address", "02:42:ca:15:00:0a", "busybox",
                    "cat", "/sys/class/net/eth0/address") == "02:42:ca:15:00:0a\n"
        cais("network", "create", "--ipv6", "--subnet", "10.96.0.0/24", "--subnet", "fd00:ca1b::/64", "--gateway",
             "fd00:ca1b::fe", "--aux-address", "r=10.96.0.2", "--ip-range", "10.96.0.128/25", "clinet6")
        try:
            config = json.loads(cais("network", "inspect", "clinet6"))[0]["IPAM"]["Config"]
            assert config == [{"Subnet": "10.96.0.0/24", "Gateway": "10.96.0.1", "IPRange": "10.96.0.128/25",
                               "AuxiliaryAddresses": {"r": "10.96.0.2"}},
                              {"Subnet": "fd00:ca1b::/64", "Gateway": "fd00:ca1b::fe"}]
        finally:
            d.cais("network", "rm", "clinet6", check=False)
        done = d.cais("network", "create", "--subnet", "10.95.0.0/24", "--gateway", "10.94.0.1", "x", check=False)
        assert done.returncode != 0 and b"no matching subnet for gateway 10.94.0.1" in done.stderr
        done = d.cais("run", "--rm", "-p", "1:2:3:4", "busybox", "true", check=False)
        assert done.returncode != 0 and b"invalid publish spec" in done.stderr
    finally:
        d.cais("rm", "-f", "clibox", check=False)
        d.cais("network", "rm", "clinet", check=False)
    for body in ('{"Name": 5}', '{"Name": "x", "IPAM": {"Config": "10.0.0.0/8"}}', '{"Name": "x", "Options": ["a"]}',
                 '{"Name": "bad name!"}', "not json", '{"Name": "x", "IPAM": {"Config": [{"Subnet": "nope"}]}}'):
        done = subprocess.run(["curl", "-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--unix-socket", d.sock,
                               "-XPOST", "-H", "Content-Type: application/json", "-d", body,
                               "http://x/networks/create"], capture_output=True, text=True)
        assert done.stdout == "400", (body, done.stdout, done.stderr)
        assert "message" in done.stderr and "Traceback" not in done.stderr
    assert "x" not in _out(d, "network", "ls", "--format", "{{.Name}}").split()
    for body in ('{"Image": "busybox", "Cmd": ["true"], "NetworkingConfig": {"EndpointsConfig": {"bridge": "x"}}}',
                 '{"Image": "busybox", "Cmd": ["true"], "MacAddress": "nope"}'):
        done = subprocess.run(["curl", "-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--unix-socket", d.sock,
                               "-XPOST", "-H", "Content-Type: application/json", "-d", body,
                               "http://x/containers/create"], capture_output=True, text=True)
        assert done.stdout == "400", (body, done.stdout, done.stderr)


def test_docker_cli_ipv6(d: Caisd) -> None:
    _out(d, "network", "create", "--ipv6", "--subnet", "fd00:ca17::/64", "v6net")
    try:
        info = json.loads(_out(d, "network", "inspect", "v6net"))[0]
        _out(d, "network", "create", "--ipv4=false", "--ipv6", "--subnet", "fd00:ca19::/64", "v6only")
        only = json.loads(_out(d, "network", "inspect", "v6only"))[0]
        assert only["EnableIPv4"] is False and [c["Subnet"] for c in only["IPAM"]["Config"]] == ["fd00:ca19::/64"]
        out = _out(d, "run", "--rm", "--network", "v6only", "busybox", "ip", "addr", "show", "eth0")
        assert "inet6 fd00:ca19::2/64" in out and "inet " not in out
        assert "IPv4 or IPv6 must be enabled" in _err(d, "network", "create", "--ipv4=false", "neither")
        done = d.cais("network", "create", "--ipv4=false", "--ipv6", "clionly6")  # the cais CLI's flag too
        assert json.loads(d.cais("network", "inspect", "clionly6").stdout)[0]["EnableIPv4"] is False, done
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", d.sock, "-XPOST",
                               "-H", "Content-Type: application/json", "-d",
                               '{"Name": "old6", "EnableIPv4": false, "EnableIPv6": true}',
                               "http://x/v1.44/networks/create"], capture_output=True, text=True)
        assert done.stdout == "201" and json.loads(_out(d, "network", "inspect", "old6"))[0]["EnableIPv4"]  # < 1.47
        assert info["EnableIPv6"] and info["EnableIPv4"] and {c["Subnet"] for c in info["IPAM"]["Config"]} >= {"fd00:ca17::/64"}
        out = _out(d, "run", "--rm", "--network", "v6net", "--ip6", "fd00:ca17::9", "busybox", "ip", "-6", "addr")
        assert "fd00:ca17::9/64" in out
        assert "IPv6" in _err(d, "network", "create", "--subnet", "fd00:ca18::/64", "v6bad")
        _out(d, "network", "create", "--ipv6", "auto6")  # no --subnet: a unique local /64, as docker 27+
        auto = json.loads(_out(d, "network", "inspect", "auto6"))[0]["IPAM"]["Config"]
        assert auto[1]["Subnet"].startswith("fd") and auto[1]["Subnet"].endswith("::/64")

        # published on both families by default; [::]:PORT on IPv6 only
        _out(d, "run", "-d", "--name", "web6", "--hostname", "web6", "--network", "v6net", "-p", "18085:80",
             "-p", "[::]:18088:80", "busybox", "sh", "-c", WEB)
        info = json.loads(_out(d, "inspect", "web6"))[0]["NetworkSettings"]
        assert info["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "18085"},
                                           {"HostIp": "::", "HostPort": "18085"},
                                           {"HostIp": "::", "HostPort": "18088"}]
        endpoint = info["Networks"]["v6net"]
        assert endpoint["GlobalIPv6Address"].startswith("fd00:ca17::") and endpoint["IPv6Gateway"] == "fd00:ca17::1"
        assert "[::]:18088" in _out(d, "port", "web6")
        for url in ("http://127.0.0.1:18085/", "http://[::1]:18085/", "http://[fd00:ca17::1]:18088/"):
            assert http_get(url) == "hello from web6\n", url
        with pytest.raises(AssertionError):
            http_get("http://127.0.0.1:18088/", wait=0)
        d.kill(signal.SIGKILL)  # a crash: the IPv6 rules and the ::1 proxy come back with caisd
        d.start()
        for url in ("http://[::1]:18085/", "http://[fd00:ca17::1]:18088/"):
            assert http_get(url) == "hello from web6\n", url
    finally:
        d.docker("rm", "-f", "web6", check=False)
        d.docker("network", "rm", "v6net", "auto6", "v6only", "clionly6", "old6", check=False)


def test_default_bridge_settings(d: Caisd) -> None:
    """dockerd's --bip, --fixed-cidr, --ipv6 and --fixed-cidr-v6: the default bridge is re-made (same id)."""
    before = json.loads(_out(d, "network", "inspect", "bridge"))[0]
    flags = ["--bip", "10.66.0.1/24", "--fixed-cidr", "10.66.0.128/25", "--ipv6", "--fixed-cidr-v6", "fd00:ca1c::/64"]
    for bad in (["--ipv6", "--fixed-cidr-v6", "fd00::/129"], ["--bip", "10.66.0.300/24"],
                ["--bip", "10.66.0.1/24", "--fixed-cidr", "10.67.0.0/25"]):
        done = subprocess.run([*d.args(), *bad], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
    original = d.network_args
    d.kill(signal.SIGTERM)
    d.network_args = [*original, *flags]
    try:
        d.start()
        info = json.loads(_out(d, "network", "inspect", "bridge"))[0]
        assert info["Id"] == before["Id"] and info["EnableIPv6"]
        assert info["IPAM"]["Config"] == [{"Subnet": "10.66.0.0/24", "Gateway": "10.66.0.1", "IPRange": "10.66.0.128/25"},
                                          {"Subnet": "fd00:ca1c::/64", "Gateway": "fd00:ca1c::1"}]
        _out(d, "run", "-d", "--name", "dflt6", "--hostname", "dflt6", "-p", "18093:80", "busybox", "sh", "-c", WEB)
        settings = json.loads(_out(d, "inspect", "dflt6"))[0]["NetworkSettings"]
        assert settings["IPAddress"] == "10.66.0.128" and settings["GlobalIPv6Address"] == "fd00:ca1c::2"
        assert settings["IPv6Gateway"] == "fd00:ca1c::1"
        for url in ("http://127.0.0.1:18093/", "http://[::1]:18093/", "http://[fd00:ca1c::1]:18093/"):
            assert http_get(url) == "hello from dflt6\n", url
    finally:
        d.docker("rm", "-f", "dflt6", check=False)
        d.kill(signal.SIGTERM)
        d.network_args = original
        d.start()
    after = json.loads(_out(d, "network", "inspect", "bridge"))[0]
    assert after["Id"] == before["Id"] and after["IPAM"]["Config"] == before["IPAM"]["Config"]
    assert not after["EnableIPv6"]


def test_daemon_json_default_bridge(tmp_root: str) -> None:
    import os

    from cais.daemon.config import ConfigError, load

    path = os.path.join(tmp_root, "daemon.json")
    with open(path, "w") as f:
        json.dump({"bip": "10.66.0.1/24", "ipv6": True, "fixed-cidr-v6": "fd00:ca1d::/64"}, f)
    settings, _ = load(["--config-file", path])
    assert settings.ipv6 and settings.bridge_ipam == [{"Subnet": "10.66.0.0/24", "Gateway": "10.66.0.1"},
                                                      {"Subnet": "fd00:ca1d::/64"}]
    with pytest.raises(ConfigError, match="both as a flag and in the configuration file"):
        load(["--config-file", path, "--bip", "10.67.0.1/24"])
