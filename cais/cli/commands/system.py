"""System commands: version, info, events, system df/prune, registry serve."""

from __future__ import annotations

import os
import sys
import time

from cais import fastjson
from cais.cli import format as fmt
from cais.cli.args import Parser, filter_arg
from cais.cli.client import API_VERSION, ApiError
from cais.cli.commands.containers import _api, _confirm
from cais.cli.main import CliError
from cais.engine import humanize


def cmd_version(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais import __version__
    from cais.image.platform import go_arch
    p = Parser("version", "[OPTIONS]")
    p.add_argument("-f", "--format")
    opts = p.parse_args(args)
    try:
        server = ctx.client.call("GET", "/version")
    except (ApiError, OSError) as e:
        server = None
        error = str(e)
    version = ctx._client.version if ctx._client is not None else API_VERSION  # negotiated with the daemon
    client = {"Version": __version__, "ApiVersion": version, "DefaultAPIVersion": API_VERSION, "Os": "linux",
              "Arch": go_arch(os.uname().machine),
              "GoVersion": f"python{sys.version.split()[0]}"}
    if opts.format:
        print(fmt.render(opts.format, {"Client": client, "Server": server}))
        return 0
    downgraded = f" (downgraded from {API_VERSION})" if version != API_VERSION else ""
    print(f"Client:\n Version:           {client['Version']}\n API version:       {version}{downgraded}\n"
          f" Python version:    {client['GoVersion']}\n OS/Arch:           linux/{client['Arch']}")
    if server is None:
        raise CliError(f"Cannot connect to the cais daemon: {error}")
    print(f"\nServer: {server.get('Platform', {}).get('Name', '')}\n Engine:\n"
          f"  Version:          {server['Version']}\n"
          f"  API version:      {server['ApiVersion']} (minimum version {server.get('MinAPIVersion', '')})\n"
          f"  OS/Arch:          {server['Os']}/{server['Arch']}\n  Kernel:           {server.get('KernelVersion', '')}")
    return 0


def cmd_info(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("info", "[OPTIONS]")
    p.add_argument("-f", "--format")
    opts = p.parse_args(args)
    info = _api(ctx, "GET", "/info")
    if opts.format:
        print(fastjson.dumps(info) if opts.format == "json" else fmt.render(opts.format, info))
        return 0
    lines = [
        "Server:",
        f" Containers: {info['Containers']}", f"  Running: {info['ContainersRunning']}",
        f"  Paused: {info['ContainersPaused']}", f"  Stopped: {info['ContainersStopped']}",
        f" Images: {info['Images']}", f" Server Version: {info['ServerVersion']}",
        f" Storage Driver: {info['Driver']}", f" Logging Driver: {info['LoggingDriver']}",
        f" Cgroup Driver: {info['CgroupDriver']}", f" Cgroup Version: {info['CgroupVersion']}",
        f" Default Runtime: {info['DefaultRuntime']}", f" Init Binary: {info.get('InitBinary', '')}",
        f" Live Restore Enabled: {str(info['LiveRestoreEnabled']).lower()}",
        f" Kernel Version: {info['KernelVersion']}", f" Operating System: {info['OperatingSystem']}",
        f" OSType: {info['OSType']}", f" Architecture: {info['Architecture']}", f" CPUs: {info['NCPU']}",
        f" Total Memory: {humanize.bytes_size(info['MemTotal'])}", f" Name: {info['Name']}",
        f" ID: {info['ID']}", f" Docker Root Dir: {info['DockerRootDir']}",
        f" Debug Mode: {str(info['Debug']).lower()}",
    ]
    print("\n".join(lines))
    for warning in info.get("Warnings") or []:
        print(warning, file=sys.stderr)
    return 0


def cmd_events(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli.commands.containers import _since
    p = Parser("events", "[OPTIONS]")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    p.add_argument("--format")
    p.add_argument("--since")
    p.add_argument("--until")
    opts = p.parse_args(args)
    filters: dict[str, list[str]] = {}
    for f in opts.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    try:
        for e in ctx.client.json_lines("GET", "/events", {"filters": filters or None, "since": _since(opts.since),
                                                          "until": _since(opts.until)}):
            if opts.format:
                e = _event_message(e)
                print(fmt.go_json(e) if opts.format == "json" else fmt.render(opts.format, e), flush=True)
                continue
            local = time.localtime(e["time"])
            zone = time.strftime("%z", local)
            when = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{e['timeNano'] % 10**9:09d}"
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
            print(f"{when}{'Z' if zone == '+0000' else zone[:3] + ':' + zone[3:]} {e['Type']} {e['Action']} "
                  f"{e['Actor']['ID']} ({attrs})", flush=True)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    return 0


def _event_message(e: dict) -> dict:
    """An event as the docker CLI decodes it (events.Message) to print it: its fields in the Go
    struct's order, the deprecated ones left out when empty, the attributes sorted (a Go map)."""
    actor = e.get("Actor") or {}
    message = {k: e[k] for k in ("status", "id", "from") if e.get(k)}
    return {**message, "Type": e.get("Type", ""), "Action": e.get("Action", ""),
            "Actor": {"ID": actor.get("ID", ""), "Attributes": dict(sorted((actor.get("Attributes") or {}).items()))},
            "scope": e.get("scope", ""), "time": e.get("time", 0), "timeNano": e.get("timeNano", 0)}


def cmd_system_df(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("system df", "[OPTIONS]")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--format")
    opts = p.parse_args(args)
    df = _api(ctx, "GET", "/system/df")
    if opts.verbose:
        return _df_verbose(df, opts.format)
    images, containers = df.get("Images") or [], df.get("Containers") or []
    volumes = [v for v in df.get("Volumes") or [] if _used(v) != -1]
    active = [c for c in containers if c["State"] in ("running", "paused", "restarting")]
    layers = df.get("LayersSize", 0)
    in_use = sum(i["Size"] - i["SharedSize"] for i in images
                 if i.get("Containers") and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1)
    rw = sum(c.get("SizeRw", 0) for c in containers)
    volume_size = sum(_used(v) for v in volumes)
    rows = [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(sum(1 for i in images if i.get("Containers"))),
         "Size": humanize.size(layers, 4), "Reclaimable": _reclaimable(layers - in_use, layers)},
        {"Type": "Containers", "TotalCount": str(len(containers)), "Active": str(len(active)),
         "Size": humanize.size(rw, 4), "Reclaimable": _reclaimable(rw - sum(c.get("SizeRw", 0) for c in active), rw)},
        {"Type": "Local Volumes", "TotalCount": str(len(df.get("Volumes") or [])),
         "Active": str(sum(1 for v in df.get("Volumes") or [] if _refs(v))), "Size": humanize.size(volume_size, 4),
         "Reclaimable": _reclaimable(sum(_used(v) for v in volumes if not _refs(v)), volume_size)},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
    ]
    columns = [("TYPE", "Type"), ("TOTAL", "TotalCount"), ("ACTIVE", "Active"), ("SIZE", "Size"),
               ("RECLAIMABLE", "Reclaimable")]
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows])
    return 0


def _df_verbose(df: dict, template: str | None) -> int:
    """`system df -v`: the images, containers, volumes and build cache, each with the context `ls`
    uses (first tag only, no virtual sizes); a --format sees them all at once."""
    from cais.cli import contexts
    trunc = not template or template.startswith("table")
    images = []
    for i in df.get("Images") or []:
        repo, tag = "<none>", "<none>"
        tags = i.get("RepoTags") or []
        if tags and tags != ["<none>:<none>"]:
            name, _, tag = tags[0].rpartition(":")
            repo = contexts.familiar(name)
        images.append(contexts.image(i, repo, tag, "", trunc))
    containers = [contexts.container(c, trunc, virtual=False) for c in df.get("Containers") or []]
    volumes = [contexts.volume(v) for v in df.get("Volumes") or []]
    if template and template != "table":
        whole = {"Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": []}
        sys.stdout.write(fmt.render("{{json .}}" if template == "json" else template, whole))
        return 0
    out = sys.stdout
    out.write("Images space usage:\n\n")
    out.write(fmt.table([[i[k] for k in ("Repository", "Tag", "ID", "CreatedSince", "Size", "SharedSize", "UniqueSize",
                                          "Containers")] for i in images],
                        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]))
    out.write("\nContainers space usage:\n\n")
    out.write(fmt.table([[c[k] for k in ("ID", "Image", "Command", "LocalVolumes", "Size", "RunningFor", "Status",
                                          "Names")] for c in containers],
                        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]))
    out.write("\nLocal Volumes space usage:\n\n")
    out.write(fmt.table([[v["Name"], v["Links"], v["Size"]] for v in volumes], ["VOLUME NAME", "LINKS", "SIZE"]))
    out.write("\nBuild cache usage: 0B\n\n")
    out.write(fmt.table([], ["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]))
    return 0


def _reclaimable(size: int, total: int) -> str:
    """As the docker CLI: `1.5MB (40%)`, the share left out when nothing is counted."""
    return f"{humanize.size(size, 4)} ({size * 100 // total}%)" if total > 0 else humanize.size(size, 4)


def _refs(volume: dict) -> int:
    return (volume.get("UsageData") or {}).get("RefCount", 0)


def _used(volume: dict) -> int:
    return (volume.get("UsageData") or {}).get("Size", 0)


def cmd_system_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("system prune", "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")
    opts = p.parse_args(args)
    volumes_line = "  - anonymous volumes not used by at least one container\n" if opts.volumes else ""
    if not opts.force and not _confirm("WARNING! This will remove:\n  - all stopped containers\n"
                                       f"{volumes_line}  - all dangling images\n\nAre you sure you want to continue? "
                                       "[y/N] "):
        return 0
    containers = _api(ctx, "POST", "/containers/prune")
    volumes = _api(ctx, "POST", "/volumes/prune") if opts.volumes else {}  # anonymous ones, as docker
    images = _api(ctx, "POST", "/images/prune", {"filters": {"dangling": ["false" if opts.all else "true"]}})
    for cid in containers.get("ContainersDeleted") or []:
        print(f"deleted container: {cid}")
    for name in volumes.get("VolumesDeleted") or []:
        print(f"deleted volume: {name}")
    for entry in images.get("ImagesDeleted") or []:
        for k, v in entry.items():
            print(f"{k.lower()}: {v}")
    total = containers.get("SpaceReclaimed", 0) + images.get("SpaceReclaimed", 0) + volumes.get("SpaceReclaimed", 0)
    print(f"\nTotal reclaimed space: {humanize.size(total)}")
    return 0


def cmd_registry_serve(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    """`cais registry serve [ARGS]`: the cais registry server (python -m cais.registry.server)."""
    from cais.registry.server.__main__ import main
    return main(args, prog="cais registry serve")
