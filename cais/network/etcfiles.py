"""A container's /etc/hosts, /etc/hostname and /etc/resolv.conf, as docker writes them."""

from __future__ import annotations

import ipaddress

EMBEDDED_DNS = "127.0.0.11"
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]  # docker's choice when the host only has loopback resolvers


def hosts(hostname: str, addresses: list[str], extra: list[str] | None = None, domain: str = "") -> str:
    """`extra`: --add-host values, "name:ip" (docker also accepts "name=ip")."""
    fqdn = f"{hostname}.{domain} {hostname}" if domain else hostname
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    for entry in extra or []:
        name, sep, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        lines.append(f"{ip.strip('[]')}\t{name}")
    for addr in addresses or ["127.0.0.1"]:
        lines.append(f"{addr}\t{fqdn}")
    return "\n".join(lines) + "\n"


def validate_add_host(entry: str) -> None:
    from cais.network.errors import InvalidConfig

    name, sep, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
    try:
        if not name or not sep or ip == "host-gateway":
            raise ValueError
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise InvalidConfig(f"invalid IP address in add-host: {entry!r}") from None


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
