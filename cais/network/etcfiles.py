"""A container's /etc/hosts, /etc/hostname and /etc/resolv.conf, as docker writes them."""

from __future__ import annotations

import ipaddress

EMBEDDED_DNS = "127.0.0.11"
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]  # docker's choice when the host only has loopback resolvers


HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway: the host's address seen from containers


def parse_add_host(entry: str, host_gateway: str = "") -> tuple[str, str]:
    """(name, address) of an --add-host value, "name:ip" or "name=ip" (ip may be [bracketed]);
    `host-gateway` stands for `host_gateway`, the default bridge's gateway as in docker."""
    from cais.network.errors import InvalidConfig

    name, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
    ip = ip.strip("[]")
    if ip == HOST_GATEWAY:
        if not host_gateway:
            raise InvalidConfig(f"unable to derive the IP value for host-gateway in {entry!r}: "
                                "there is no default bridge network")
        ip = host_gateway
    try:
        if not name or not sep:
            raise ValueError
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidConfig(f"invalid IP address in add-host: {entry!r}") from None
    return name, ip


def hosts(hostname: str, addresses: list[str], extra: list[tuple[str, str]] | None = None, domain: str = "") -> str:
    """`extra`: the (name, address) of --add-host values (see parse_add_host)."""
    fqdn = f"{hostname}.{domain} {hostname}" if domain else hostname
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{ip}\t{name}" for name, ip in extra or []]
    for addr in addresses or ["127.0.0.1"]:
        lines.append(f"{addr}\t{fqdn}")
    return "\n".join(lines) + "\n"


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
        elif words and words[0] in ("search", "domain"):
            search = words[1:]
        elif words and words[0] == "options":
            options += words[1:]
    return servers, search, options


def resolv_conf(host_text: str, *, dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None, embedded: bool = False) -> str:
    """Container resolv.conf: the embedded server on user-defined networks, else the host's servers.

    Loopback servers of the host cannot be reached from a container's namespace: dropped, as docker.
    """
    host_servers, host_search, host_options = parse_resolv(host_text)
    if embedded:
        servers = [EMBEDDED_DNS]
        options = options or [*host_options, "ndots:0"]
    else:
        servers = dns or [s for s in host_servers if not ipaddress.ip_address(s.split("%")[0]).is_loopback]
        servers = servers or FALLBACK_DNS
        options = options if options is not None else host_options
    lines = [f"nameserver {s}" for s in servers]
    if search or host_search:
        lines.append("search " + " ".join(search or host_search))
    if options:
        lines.append("options " + " ".join(dict.fromkeys(options)))
    return "\n".join(lines) + "\n"
