"""`cais volume create|ls|inspect|rm|prune`: docker's volume commands over the /volumes endpoints."""

from __future__ import annotations

from cais.cli import format as fmt
from cais.cli.args import Parser, filter_arg
from cais.cli.commands.containers import _api, _confirm, _each, _inspect_each, _print_pruned
from cais.cli.main import CliError


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise CliError(f"invalid argument \"{item}\" for \"{flag}\" flag: key cannot be empty", 125)
        out[key] = value
    return out


def _filters(items: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"invalid argument \"{item}\" for \"-f, --filter\" flag: bad format of filter "
                           "(expected name=value)", 125)
        filters.setdefault(key, []).append(value)
    return filters


def cmd_volume_create(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("volume create", "[OPTIONS] [VOLUME]")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--name", dest="name_flag")
    p.add_argument("name", nargs="?", default="")
    opts = p.parse_args(args)
    if opts.name and opts.name_flag and opts.name != opts.name_flag:
        raise CliError("conflicting options: cannot specify a volume-name through both --name and as a "
                       "positional arg", 1)
    body = {"Name": opts.name or opts.name_flag or "", "Driver": opts.driver,
            "DriverOpts": _pairs(opts.opt, "--opt"), "Labels": _pairs(opts.label, "--label")}
    print(_api(ctx, "POST", "/volumes/create", body=body)["Name"])
    return 0


def cmd_volume_ls(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("volume ls", "[OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    filters = _filters(opts.filter)
    result = _api(ctx, "GET", "/volumes", {"filters": filters or None})
    volumes = sorted(result.get("Volumes") or [], key=lambda v: v["Name"])
    if opts.quiet:
        for v in volumes:
            print(v["Name"])
        return 0
    from cais.cli import contexts
    columns = [("DRIVER", "Driver"), ("VOLUME NAME", "Name")]
    rows = [contexts.volume(v) for v in volumes]
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows],
               [("name", "Name", False), ("driver", "Driver", False)])
    return 0


def cmd_volume_inspect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("volume inspect", "[OPTIONS] VOLUME [VOLUME...]")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    return _inspect_each(ctx, "/volumes", opts.names, opts.format, "volume.Volume")  # no fallback to a map


def cmd_volume_rm(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("volume rm", "[OPTIONS] VOLUME [VOLUME...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    return _each(ctx, opts.names,
                 lambda name: _api(ctx, "DELETE", f"/volumes/{name}", {"force": "1" if opts.force else "0"}))


def cmd_volume_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("volume prune", "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    filters = _filters(opts.filter)
    if opts.all:
        filters["all"] = ["true"]
    what = "all local volumes" if opts.all else "anonymous local volumes"
    if not opts.force and not _confirm(f"WARNING! This will remove {what} not used by at least one container.\n"
                                       "Are you sure you want to continue? [y/N] "):
        return 0
    result = _api(ctx, "POST", "/volumes/prune", {"filters": filters or None})
    _print_pruned("Volumes", result.get("VolumesDeleted") or [], result.get("SpaceReclaimed", 0))
    return 0
