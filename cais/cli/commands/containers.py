"""Container commands: start, stop, ps, logs, exec, attach, cp, … (run and create: run.py)

Imported by every container command: what only some of them use (the table and template
output, humanized sizes and durations, streams) is imported where used.
"""

from __future__ import annotations

import sys
import time

from cais import fastjson
from cais.cli.args import Parser, filter_arg
from cais.cli.client import ApiError
from cais.cli.main import CliError


def _api(ctx, method: str, path: str, params: dict | None = None, body: object = None, **kw):  # type: ignore[no-untyped-def]
    try:
        return ctx.client.call(method, path, params, body, **kw)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}", 1) from None
    except OSError as e:
        raise CliError(f"Cannot connect to the cais daemon at {ctx.client.host}: {e.strerror or e}", 1) from None


def _each(ctx, names: list[str], action) -> int:  # type: ignore[no-untyped-def]
    """docker's multi-container commands: act on each, print its name, report failures at the end."""
    failed = []
    for name in names:
        try:
            action(name)
            print(name)
        except CliError as e:
            failed.append(str(e))
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


def _inspect_each(ctx, path: str, names: list[str], template: str | None,  # type: ignore[no-untyped-def]
                  go_type: str = "") -> int:
    """docker's `network|volume inspect`: GET each name under `path`, print what was found (as
    JSON, or with --format), then the failures."""
    from cais.cli import format as fmt
    found, failed = [], []
    for name in names:
        try:
            found.append(_api(ctx, "GET", f"{path}/{name}"))
        except CliError as e:
            failed.append(str(e))
    if template:
        failed = fmt.inspect_lines(found, template, go_type) + failed
    else:
        print(fastjson.dumps(found, indent=4))
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


# ---- start / stop / restart / kill / rm / pause ------------------------------------------
def cmd_start(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("start", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    if opts.attach or opts.interactive:
        from cais.cli.commands.run import _run_attached
        info = _api(ctx, "GET", f"/containers/{opts.containers[0]}/json")
        return _run_attached(ctx, info["Id"], tty=info["Config"]["Tty"], stdin=opts.interactive,
                             auto_remove=False, detach_keys=opts.detach_keys)
    return _each(ctx, opts.containers, lambda c: _api(ctx, "POST", f"/containers/{c}/start"))


def _stop_like(ctx, args: list[str], verb: str) -> int:  # type: ignore[no-untyped-def]
    p = Parser(verb, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-t", "--time", "--timeout", type=int, dest="timeout")
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    return _each(ctx, opts.containers, lambda c: _api(ctx, "POST", f"/containers/{c}/{verb}",
                                                       {"t": opts.timeout, "signal": opts.signal}))


def cmd_stop(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    return _stop_like(ctx, args, "stop")


def cmd_restart(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    return _stop_like(ctx, args, "restart")


def cmd_kill(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("kill", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    return _each(ctx, opts.containers, lambda c: _api(ctx, "POST", f"/containers/{c}/kill", {"signal": opts.signal}))


def cmd_rm(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("rm", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    return _each(ctx, opts.containers, lambda c: _api(ctx, "DELETE", f"/containers/{c}",
                                                       {"force": opts.force, "v": opts.volumes}))


def cmd_pause(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("pause", "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="+")
    return _each(ctx, p.parse_args(args).containers, lambda c: _api(ctx, "POST", f"/containers/{c}/pause"))


def cmd_unpause(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("unpause", "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="+")
    return _each(ctx, p.parse_args(args).containers, lambda c: _api(ctx, "POST", f"/containers/{c}/unpause"))


def cmd_wait(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("wait", "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="+")
    failed = 0
    for c in p.parse_args(args).containers:
        try:
            print(_api(ctx, "POST", f"/containers/{c}/wait")["StatusCode"])
        except CliError as e:
            print(e, file=sys.stderr)
            failed = 1
    return failed


def cmd_rename(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("rename", "CONTAINER NEW_NAME")
    p.add_argument("container")
    p.add_argument("name")
    opts = p.parse_args(args)
    _api(ctx, "POST", f"/containers/{opts.container}/rename", {"name": opts.name})
    return 0


def cmd_update(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli.args import cpus, size
    p = Parser("update", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-m", "--memory", type=size)
    p.add_argument("--memory-swap", type=lambda v: -1 if v == "-1" else size(v))
    p.add_argument("--memory-reservation", type=size)
    p.add_argument("--cpus", type=cpus)
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--cpuset-cpus")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--restart")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    body = {k: v for k, v in {"Memory": opts.memory, "MemorySwap": opts.memory_swap,
                               "MemoryReservation": opts.memory_reservation, "NanoCpus": opts.cpus,
                               "CpuShares": opts.cpu_shares, "CpusetCpus": opts.cpuset_cpus,
                               "PidsLimit": opts.pids_limit}.items() if v is not None}
    if opts.restart:
        from cais.cli.runopts import _restart
        body["RestartPolicy"] = _restart(opts.restart)
    return _each(ctx, opts.containers, lambda c: _api(ctx, "POST", f"/containers/{c}/update", body=body))


# ---- ps / inspect / logs / top / stats / diff / port ---------------------------------------
def _host_ip(ip: str) -> str:
    """A host address as docker 28 prints it before `:PORT`: IPv6 in brackets."""
    return f"[{ip}]" if ":" in ip else ip


def cmd_ps(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import format as fmt
    p = Parser("ps", "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    p.add_argument("--format")
    p.add_argument("-n", "--last", type=int)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    opts = p.parse_args(args)
    filters: dict[str, list[str]] = {}
    for f in opts.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    from cais.cli import contexts
    if opts.format not in (None, "json", "table", "raw"):  # checked on an empty context first, as docker
        contexts.check_container_template(opts.format)
    limit = 1 if opts.latest else opts.last
    # as the docker CLI: sizes are asked for with --size or a template using .Size
    size = opts.size or (opts.format not in (None, "json", "table") and ".Size" in opts.format)
    containers = _api(ctx, "GET", "/containers/json", {"all": opts.all or bool(limit), "filters": filters or None,
                                                        "limit": limit, "size": size or None})
    if opts.quiet:
        for c in containers:
            print(c["Id"] if opts.no_trunc else c["Id"][:12])
        return 0
    items = [contexts.container(c, not opts.no_trunc) for c in containers]
    columns = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
               ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")] + ([("SIZE", "Size")] if opts.size else [])
    raw = [("container_id", "ID", False), ("image", "Image", False), ("command", "Command", False),
           ("created_at", "CreatedAt", False), ("state", "State", True), ("status", "Status", True),
           ("names", "Names", False), ("labels", "Labels", True), ("ports", "Ports", True)]
    fmt.output(items, opts.format, columns, [[i[k] for _, k in columns] for i in items],
               raw + ([("size", "Size", False)] if opts.size else []))
    return 0


def cmd_inspect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import format as fmt
    p = Parser("inspect", "[OPTIONS] NAME|ID [NAME|ID...]")
    p.add_argument("-f", "--format")
    p.add_argument("--type", choices=["container", "image", "network", "volume"])
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="+")
    opts = p.parse_args(args)
    results, errors = [], []
    for name in opts.names:
        found = None
        for kind in ([opts.type] if opts.type else ["container", "image", "network", "volume"]):  # docker's order
            try:
                path = {"container": f"/containers/{name}/json", "image": f"/images/{name}/json",
                        "network": f"/networks/{name}", "volume": f"/volumes/{name}"}[kind]
                found = ctx.client.call("GET", path, {"size": opts.size} if kind == "container" else None)
                break
            except ApiError as e:
                if e.status != 404:
                    errors.append(f"Error response from daemon: {e}")
                    break
        if found is None:
            errors.append(f"Error: No such object: {name}")
        else:
            results.append(found)
    if opts.format:
        errors = fmt.inspect_lines(results, opts.format) + errors
    else:
        print(fastjson.dumps(results, indent=4))
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def cmd_logs(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli.streams import HEADER_SIZE, parse_header
    p = Parser("logs", "[OPTIONS] CONTAINER")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--details", action="store_true")
    p.add_argument("container")
    opts = p.parse_args(args)
    info = _api(ctx, "GET", f"/containers/{opts.container}/json")
    try:
        response = ctx.client.request("GET", f"/containers/{opts.container}/logs", {
            "stdout": 1, "stderr": 1, "follow": opts.follow, "tail": opts.tail, "timestamps": opts.timestamps,
            "since": _since(opts.since), "until": _since(opts.until), "details": opts.details})
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if info["Config"]["Tty"]:
        while chunk := response.read1(65536):
            out.write(chunk)
            out.flush()
        return 0
    while header := response.read(HEADER_SIZE):
        if len(header) < HEADER_SIZE:
            break
        stream, length = parse_header(header)
        data = response.read(length)
        target = err if stream == 2 else out
        target.write(data)
        target.flush()
    return 0


def _since(text: str | None) -> str | None:
    """docker's relative times (10m, 1h) become unix seconds; absolute ones pass through."""
    if not text:
        return None
    from cais.cli.args import duration_ns
    try:
        return f"{time.time() - duration_ns(text) / 1e9:.9f}"
    except Exception:
        return text


def cmd_top(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import format as fmt
    p = Parser("top", "CONTAINER [ps OPTIONS]", interspersed=False)  # what follows is ps's
    p.add_argument("container")
    p.add_argument("ps_args", nargs="*")
    opts = p.parse_args(args)
    result = _api(ctx, "GET", f"/containers/{opts.container}/top",
                  {"ps_args": " ".join(opts.ps_args) if opts.ps_args else None})
    sys.stdout.write(fmt.table(result["Processes"], result["Titles"], min_width=20))  # docker top's tabwriter
    return 0


def cmd_diff(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("diff", "CONTAINER")
    p.add_argument("container")
    for change in _api(ctx, "GET", f"/containers/{p.parse_args(args).container}/changes") or []:
        print(f"{'CAD'[change['Kind']]} {change['Path']}")
    return 0


def cmd_port(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("port", "CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    opts = p.parse_args(args)
    info = _api(ctx, "GET", f"/containers/{opts.container}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if opts.port:
        key = opts.port if "/" in opts.port else f"{opts.port}/tcp"
        if not ports.get(key):
            raise CliError(f"Error: No public port '{opts.port}' published for {opts.container}")
        for b in ports[key]:
            print(f"{_host_ip(b.get('HostIp') or '0.0.0.0')}:{b['HostPort']}")
        return 0
    for key, bindings in sorted(ports.items()):
        for b in bindings or []:
            print(f"{key} -> {_host_ip(b.get('HostIp') or '0.0.0.0')}:{b['HostPort']}")
    return 0


def cmd_stats(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import format as fmt
    p = Parser("stats", "[OPTIONS] [CONTAINER...]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("containers", nargs="*")
    opts = p.parse_args(args)
    from cais.cli import contexts
    names = opts.containers or [c["Id"][:12] for c in _api(ctx, "GET", "/containers/json", {"all": opts.all})]
    columns = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"), ("MEM USAGE / LIMIT", "MemUsage"),
               ("MEM %", "MemPerc"), ("NET I/O", "NetIO"), ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
    while True:
        rows = [contexts.stats(_api(ctx, "GET", f"/containers/{n}/stats", {"stream": 0}), n, not opts.no_trunc)
                for n in names]
        if not opts.no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")
        fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows])
        if opts.no_stream:
            return 0


# ---- exec / attach --------------------------------------------------------------------------
def cmd_exec(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import streams
    p = Parser("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
               interspersed=False)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    p.add_argument("command", nargs="+")
    opts = p.parse_args(args)
    body = {"Cmd": opts.command, "Tty": opts.tty, "AttachStdin": opts.interactive and not opts.detach,
            "AttachStdout": not opts.detach, "AttachStderr": not opts.detach, "User": opts.user or "",
            "WorkingDir": opts.workdir or "", "Env": opts.env, "Privileged": opts.privileged,
            "DetachKeys": opts.detach_keys or ""}
    exec_id = _api(ctx, "POST", f"/containers/{opts.container}/exec", body=body)["Id"]
    if opts.detach:
        _api(ctx, "POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": opts.tty})
        return 0
    try:
        sock = ctx.client.hijack(f"/exec/{exec_id}/start", body={"Detach": False, "Tty": opts.tty})
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}", 126) from None
    with streams.raw_terminal(opts.tty and opts.interactive):
        if opts.tty:
            from cais.cli.commands.run import _quiet_resize
            streams.watch_resize(lambda h, w: _quiet_resize(ctx, f"/exec/{exec_id}/resize", h, w))
        streams.pump(sock, tty=opts.tty, stdin=opts.interactive)
    sock.close()
    # caisd records the exit code before it ends the stream: one inspect, as the docker CLI does
    # (still running: the user detached)
    info = _api(ctx, "GET", f"/exec/{exec_id}/json")
    return 0 if info["Running"] or info["ExitCode"] is None else int(info["ExitCode"])


def cmd_attach(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli import streams
    from cais.cli.commands.run import _exit_status, _quiet_resize
    p = Parser("attach", "[OPTIONS] CONTAINER")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    opts = p.parse_args(args)
    info = _api(ctx, "GET", f"/containers/{opts.container}/json")
    if not info["State"]["Running"]:
        raise CliError("You cannot attach to a stopped container, start it first")
    stdin = info["Config"]["OpenStdin"] and not opts.no_stdin
    tty = info["Config"]["Tty"]
    params = {"stream": 1, "stdout": 1, "stderr": 1, "stdin": int(stdin), "detachKeys": opts.detach_keys}
    try:
        # not-running: answered at once if the container stopped since the inspect
        wait = ctx.client.request("POST", f"/containers/{info['Id']}/wait", {"condition": "not-running"})
        sock = ctx.client.hijack(f"/containers/{info['Id']}/attach", params)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    with streams.raw_terminal(tty and stdin):
        if tty:
            streams.watch_resize(lambda h, w: _quiet_resize(ctx, f"/containers/{info['Id']}/resize", h, w))
        streams.pump(sock, tty=tty, stdin=stdin, close_write=False)
    sock.close()
    # the stream ended: the container exited, or we detached
    return _exit_status(ctx, info["Id"], wait, detachable=True)


# ---- cp / export / prune ------------------------------------------------------------------
def cmd_cp(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli.copy import copy
    p = Parser("cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       cais cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("source")
    p.add_argument("dest")
    opts = p.parse_args(args)
    return copy(ctx, opts.source, opts.dest, archive=opts.archive, follow=opts.follow_link)


def cmd_export(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("export", "[OPTIONS] CONTAINER")
    p.add_argument("-o", "--output")
    p.add_argument("container")
    opts = p.parse_args(args)
    return _save_tar(ctx, f"/containers/{opts.container}/export", None, opts.output)


def _save_tar(ctx, path: str, params: dict | None, output: str | None) -> int:  # type: ignore[no-untyped-def]
    """`export` and `save`: stream the tar GET `path` answers to `output` or to stdout (never a terminal)."""
    if not output and sys.stdout.isatty():
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    try:
        response = ctx.client.request("GET", path, params)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    try:
        while chunk := response.read(1 << 16):
            out.write(chunk)
    finally:
        if output:
            out.close()
    return 0


def cmd_container_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("container prune", "[OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    if not opts.force and not _confirm("WARNING! This will remove all stopped containers.\n"
                                       "Are you sure you want to continue? [y/N] "):
        return 0
    result = _api(ctx, "POST", "/containers/prune")
    _print_pruned("Containers", result.get("ContainersDeleted") or [], result.get("SpaceReclaimed", 0))
    return 0


def _confirm(question: str) -> bool:
    sys.stdout.write(question)
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _print_pruned(what: str, lines: list[str], reclaimed: int | None) -> None:
    """docker's report of a prune: "Deleted WHAT:" and its lines, then the space reclaimed (if
    the endpoint tells it)."""
    from cais.engine import humanize
    if lines:
        print(f"Deleted {what}:")
        for line in lines:
            print(line)
        if reclaimed is not None:
            print()
    if reclaimed is not None:
        print(f"Total reclaimed space: {humanize.size(reclaimed)}")


