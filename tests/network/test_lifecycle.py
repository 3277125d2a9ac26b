"""A bridge endpoint across a container's start, exit, restart and a daemon crash (no traffic here)."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from cais.network import bridge, rtnl
from cais.network.errors import NetworkError
from cais.network.manager import NetworkManager
from tests.network.conftest import Lab


def _inside(ns: str, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", *args], check=True, capture_output=True, text=True).stdout


def _host_has(name: str) -> bool:
    with rtnl.session() as host:
        return host.index(name) is not None


def test_endpoint_as_docker_makes_it(lab: Lab) -> None:
    m = lab.manager
    ns = lab.sandbox("c1")
    ep = m.attach("c1", "bridge", ns, name="c1")
    with rtnl.session(ns) as ctr:
        assert ctr.names() == {"lo", "eth0"}
    link = _inside(ns, "ip", "-o", "link", "show", "eth0")
    assert "state UP" in link and ep["MacAddress"] in link and "mtu 1500" in link
    assert f"inet {ep['IPAddress']}/16 brd " in _inside(ns, "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"default via {ep['Gateway']} dev eth0" in _inside(ns, "ip", "route")
    veth = m.endpoint("c1", "bridge")["HostVeth"]
    ports = subprocess.run(["bridge", "-d", "link", "show", "dev", veth], capture_output=True, text=True).stdout
    assert f"master {m.get('bridge')['Cais']['Bridge']}" in ports and "hairpin on" in ports and "state forwarding" in ports
    # a peer name taken in the container: a clear error, nothing left on the host
    with rtnl.session() as host, pytest.raises(NetworkError, match="already exists in the container"):
        bridge.host_add_veth(host, m.get("bridge")["Cais"]["Bridge"], "cais-ntx1", "eth0", ns, 1500,
                             "02:42:0a:00:00:09")
    assert not _host_has("cais-ntx1")


def test_exit_then_restart(lab: Lab) -> None:
    """The veth goes and the address is freed after release() returns; the same container started
    again at once gets its veth, never deleted by the cleanup still pending for its last run."""
    m = lab.manager
    first = m.attach("c2", "bridge", lab.sandbox("c2"), name="c2")
    veth = m.endpoint("c2", "bridge")["HostVeth"]
    m.release("c2")
    assert m.endpoint("c2", "bridge") is None and not os.path.exists(m.sandbox_path("c2"))
    again = m.attach("c2", "bridge", lab.sandbox("c2"), name="c2")
    m.later.settle()
    assert _host_has(veth) and again["IPAddress"] == first["IPAddress"]
    m.release("c2")
    m.later.settle()
    assert not _host_has(veth)
    assert not any(m.ipam.pools(m.get("bridge")["Id"])[0].allocated.values())


def test_address_held_until_its_veth_is_gone(lab: Lab) -> None:
    m = lab.manager
    gate = threading.Event()
    m.later.submit("blocker", lambda: gate.wait(30))  # the cleanup worker busy meanwhile
    try:
        old = m.attach("c3", "bridge", lab.sandbox("c3"), name="c3")
        m.release("c3")
        new = m.attach("c4", "bridge", lab.sandbox("c4"), name="c4")
        assert new["IPAddress"] != old["IPAddress"]  # the old veth, with that address, still exists
    finally:
        gate.set()
    m.later.settle()
    assert m.attach("c5", "bridge", lab.sandbox("c5"), name="c5")["IPAddress"] == old["IPAddress"]


def test_daemon_crash_keeps_running_containers_addresses(lab: Lab, sandbox: str) -> None:
    """Allocations are not written per container: a new manager on the same data gets them back
    from the endpoints of the containers still running, frees the dead ones' and their namespaces."""
    m = lab.manager
    alive = m.attach("alive", "bridge", lab.sandbox("alive"), name="alive")
    m.attach("dead", "bridge", lab.sandbox("dead"), name="dead")
    pools = os.path.join(sandbox, "data", "ipam", m.get("bridge")["Id"] + ".json")
    with open(pools) as f:
        stored = json.load(f)
    stored[0]["Allocated"] = {"172.17.0.77": "ghost"}  # as files made before allocations moved to memory
    with open(pools, "w") as f:
        json.dump(stored, f)
    again = NetworkManager(os.path.join(sandbox, "data"), os.path.join(sandbox, "run"), upstream_dns=[],
                           bridge_name=m.bridge_name)
    again.start(alive={"alive"})
    assert not os.path.exists(again.sandbox_path("dead")) and os.path.exists(again.sandbox_path("alive"))
    assert again.ipam.pools(again.get("bridge")["Id"])[0].allocated == {alive["IPAddress"]: "alive"}
    fresh = again.attach("fresh", "bridge", again.create_sandbox("fresh"), name="fresh")
    assert fresh["IPAddress"] not in (alive["IPAddress"], "")
