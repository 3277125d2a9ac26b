"""network commands: served by the daemon's /networks endpoints."""

from __future__ import annotations

import json

from cais.cli import format as fmt
from cais.cli.args import Parser
from cais.cli.commands.containers import _api


def _ls(ctx, args: list[str], kind: str, columns: list[tuple[str, str]]) -> int:  # type: ignore[no-untyped-def]
    p = Parser(f"{kind} ls", "[OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("-f", "--filter", action="append", default=[])
    opts = p.parse_args(args)
    result = _api(ctx, "GET", f"/{kind}s")
    items = result or []
    rows = [{"ID": (i.get("Id") or "")[:12], "Name": i["Name"], "Driver": i.get("Driver", ""),
             "Scope": i.get("Scope", "local")} for i in items]
    if opts.quiet:
        for r in rows:
            print(r["Name"])
        return 0
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows])
    return 0


def cmd_network_ls(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    return _ls(ctx, args, "network", [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"),
                                      ("SCOPE", "Scope")])


def _inspect(ctx, args: list[str], kind: str) -> int:  # type: ignore[no-untyped-def]
    p = Parser(f"{kind} inspect", "NAME [NAME...]")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    found = [_api(ctx, "GET", f"/{kind}s/{n}") for n in opts.names]
    if opts.format:
        for item in found:
            print(fmt.render(opts.format, item))
    else:
        print(json.dumps(found, indent=4))
    return 0


def cmd_network_inspect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    return _inspect(ctx, args, "network")


def cmd_network_create(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("network create", "[OPTIONS] NETWORK")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("name")
    opts = p.parse_args(args)
    print(_api(ctx, "POST", "/networks/create", body={"Name": opts.name, "Driver": opts.driver})["Id"])
    return 0


def _rm(ctx, args: list[str], kind: str) -> int:  # type: ignore[no-untyped-def]
    p = Parser(f"{kind} rm", "NAME [NAME...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    for name in opts.names:
        _api(ctx, "DELETE", f"/{kind}s/{name}")
        print(name)
    return 0


def cmd_network_rm(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    return _rm(ctx, args, "network")


def cmd_network_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    _api(ctx, "POST", "/networks/prune")
    return 0
