"""`cais network create|ls|inspect|connect|disconnect|rm|prune`: docker's network commands over /networks."""

from __future__ import annotations

import sys

from cais.cli import format as fmt
from cais.cli.args import Parser, filter_arg
from cais.cli.commands.containers import _api, _confirm, _inspect_each, _print_pruned
from cais.cli.commands.volumes import _filters, _pairs
from cais.cli.main import CliError


def _ipam_config(subnets: list[str], gateways: list[str], ranges: list[str], aux: dict[str, str]) -> list[dict]:
    """docker's pairing: each --gateway, --ip-range and --aux-address goes with the --subnet holding it."""
    import contextlib
    import ipaddress

    def holder(value: str, what: str) -> dict:
        try:
            inner = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise CliError(f"invalid {what} {value!r}", 125) from None
        for c in config:
            with contextlib.suppress(ValueError, TypeError):
                if inner.subnet_of(ipaddress.ip_network(c["Subnet"], strict=False)):  # type: ignore[arg-type]
                    return c
        raise CliError(f"no matching subnet for {what} {value}", 125)

    config: list[dict] = [{"Subnet": s} for s in subnets]
    for key, what, values in (("Gateway", "gateway", gateways), ("IPRange", "range", ranges)):
        for value in values:
            c = holder(value, what)
            if key in c:
                raise CliError(f"cannot configure multiple {what}s ({c[key]}, {value}) for the same subnet "
                               f"({c['Subnet']})", 125)
            c[key] = value
    for name, value in aux.items():
        holder(value, "aux-address").setdefault("AuxiliaryAddresses", {})[name] = value
    return config


def cmd_network_create(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network create", "[OPTIONS] NETWORK")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv4", action="store_true", default=True)  # --ipv4=false: IPv6-only (with --ipv6)
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("name")
    opts = p.parse_args(args)
    config = _ipam_config(opts.subnet, opts.gateway, opts.ip_range, _pairs(opts.aux_address, "--aux-address"))
    body = {"Name": opts.name, "Driver": opts.driver, "Internal": opts.internal, "Attachable": opts.attachable,
            "EnableIPv6": opts.ipv6, **({} if opts.ipv4 else {"EnableIPv4": False}),
            "IPAM": {"Driver": "default", "Config": config},
            "Options": _pairs(opts.opt, "--opt"), "Labels": _pairs(opts.label, "--label")}
    print(_api(ctx, "POST", "/networks/create", body=body)["Id"])
    return 0


def cmd_network_ls(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network ls", "[OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    networks = sorted(_api(ctx, "GET", "/networks", {"filters": _filters(opts.filter) or None}),
                      key=lambda n: n["Name"])
    from cais.cli import contexts
    rows = [contexts.network(n, not opts.no_trunc) for n in networks]
    if opts.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    columns = [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("SCOPE", "Scope")]
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows],
               [("network_id", "ID", False), ("name", "Name", False), ("driver", "Driver", False),
                ("scope", "Scope", False)])
    return 0


def cmd_network_inspect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network inspect", "[OPTIONS] NETWORK [NETWORK...]")
    p.add_argument("-f", "--format")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    return _inspect_each(ctx, "/networks", opts.names, opts.format)


def cmd_network_connect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network connect", "[OPTIONS] NETWORK CONTAINER")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("network")
    p.add_argument("container")
    opts = p.parse_args(args)
    config = {"Aliases": opts.alias or None,
              "IPAMConfig": {"IPv4Address": opts.ip or "", "IPv6Address": opts.ip6 or ""} if opts.ip or opts.ip6 else None}
    _api(ctx, "POST", f"/networks/{opts.network}/connect", body={"Container": opts.container,
                                                                "EndpointConfig": config})
    return 0


def cmd_network_disconnect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network disconnect", "[OPTIONS] NETWORK CONTAINER")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    opts = p.parse_args(args)
    _api(ctx, "POST", f"/networks/{opts.network}/disconnect", body={"Container": opts.container,
                                                                   "Force": opts.force})
    return 0


def cmd_network_rm(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network rm", "[OPTIONS] NETWORK [NETWORK...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    failed = []
    for name in opts.names:
        try:
            _api(ctx, "DELETE", f"/networks/{name}")
            print(name)
        except CliError as e:
            if not (opts.force and "not found" in str(e)):
                failed.append(str(e))
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


def cmd_network_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network prune", "[OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    if not opts.force and not _confirm("WARNING! This will remove all custom networks not used by at least one "
                                       "container.\nAre you sure you want to continue? [y/N] "):
        return 0
    result = _api(ctx, "POST", "/networks/prune", {"filters": _filters(opts.filter) or None})
    _print_pruned("Networks", result.get("NetworksDeleted") or [], None)
    return 0
