"""Legacy links on the default bridge (`docker run --link NAME[:ALIAS]`), as dockerd makes them.

The linking container (the parent) gets, for each linked one (the child): a line in /etc/hosts
naming the child's address by the alias, the child's hostname and name; and environment
variables `ALIAS_NAME`, `ALIAS_PORT…` for each port the child exposes, `ALIAS_ENV_…` for each of
its variables (dockerd's links.Link.ToEnv). On user-defined networks a link is only a name the
embedded DNS answers for the parent (see manager.py).
"""

from __future__ import annotations

import posixpath


def parse_link(text: str) -> tuple[str, str]:
    """(container, alias) of `NAME[:ALIAS]`; also takes inspect's `/NAME:/PARENT/ALIAS`."""
    if not text:
        raise ValueError("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2 or not parts[0].strip("/") or (len(parts) == 2 and not parts[1].strip("/")):
        raise ValueError(f"bad format for links: {text}")
    if len(parts) == 1:
        return text.strip("/"), text.strip("/")
    if parts[0].startswith("/"):
        return parts[0][1:], posixpath.basename(parts[1])
    return parts[0], parts[1]


def _ports(exposed: dict | list | None) -> list[tuple[int, str]]:
    """Exposed ports as (number, protocol), tcp before udp of one number (dockerd's order)."""
    ports = []
    for key in exposed or []:
        number, _, proto = str(key).partition("/")
        if number.isdigit():
            ports.append((int(number), (proto or "tcp").lower()))
    return sorted(set(ports), key=lambda p: (p[0], p[1] != "tcp", p[1]))


def _next_contiguous(ports: list[tuple[int, str]], value: int, index: int) -> int:
    if index + 1 == len(ports):
        return index
    for i in range(index + 1, len(ports)):
        if ports[i][0] > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def env(link_name: str, child_ip: str, child_env: list[str] | None, exposed: dict | list | None) -> list[str]:
    """The variables of one link; `link_name` is `/PARENT/ALIAS`."""
    alias = posixpath.basename(link_name).upper().replace("-", "_")
    ports = _ports(exposed)
    out = []
    if ports:
        number, proto = ports[0]
        out.append(f"{alias}_PORT={proto}://{child_ip}:{number}")
    i = 0
    while i < len(ports):  # runs of 3+ contiguous ports also get _START/_END variables
        (number, proto), j = ports[i], _next_contiguous(ports, ports[i][0], i)
        if j > i + 1:
            prefix, (end, end_proto) = f"{alias}_PORT_{number}_{proto.upper()}", ports[j]
            out += [f"{prefix}_START={proto}://{child_ip}:{number}", f"{prefix}_ADDR={child_ip}",
                    f"{prefix}_PROTO={proto}", f"{prefix}_PORT_START={number}",
                    f"{alias}_PORT_{number}_{end_proto.upper()}_END={end_proto}://{child_ip}:{end}",
                    f"{alias}_PORT_{number}_{end_proto.upper()}_PORT_END={end}"]
            i = j + 1
        else:
            i += 1
    for number, proto in ports:
        prefix = f"{alias}_PORT_{number}_{proto.upper()}"
        out += [f"{prefix}={proto}://{child_ip}:{number}", f"{prefix}_ADDR={child_ip}", f"{prefix}_PORT={number}",
                f"{prefix}_PROTO={proto}"]
    out.append(f"{alias}_NAME={link_name}")
    for item in child_env or []:
        key, sep, _ = item.partition("=")
        if sep and key not in ("HOME", "HOSTNAME", "PATH"):  # set by docker/the build, not the child's own
            out.append(f"{alias}_ENV_{item}")
    return out


def host_names(alias: str, child_hostname: str, child_name: str) -> str:
    """The names of a child's /etc/hosts line: the alias, its hostname, and its name if not the alias."""
    names = f"{alias} {child_hostname}"
    return names if alias == child_name else f"{names} {child_name}"
