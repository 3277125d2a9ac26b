"""The network drivers: how a container's network namespace is obtained and what goes in it.

- `none`: a namespace of its own with only the loopback up.
- `host`: no namespace of its own, the host's (the runtime is told not to create one).
- `container:NAME`: the namespace of another container (the engine passes its path).
- `bridge`: a namespace of its own, one veth per network plugged into that network's bridge
  (see bridge.py, manager.py); for a macvlan or ipvlan network, one sub-interface of the
  network's parent instead (macvlan.py). The mode's kind is `bridge` for all three.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """A container's --network: kind is none, host, container or bridge (for any network of its own:
    bridge, macvlan or ipvlan)."""

    kind: str
    network: str = ""  # bridge: the network's name or id; container: the other container

    @classmethod
    def parse(cls, value: str | None) -> Mode:
        value = value or "bridge"
        if value in ("none", "host"):
            return cls(value)
        if value.startswith("container:"):
            return cls("container", value.partition(":")[2])
        return cls("bridge", "bridge" if value == "default" else value)
