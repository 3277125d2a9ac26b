"""Image commands: pull, push, images, rmi, tag, save, load, import, history, build, commit, bootstrap."""

from __future__ import annotations

import os
import sys

from cais import fastjson
from cais.cli import format as fmt
from cais.cli.args import Parser, filter_arg
from cais.cli.client import ApiError
from cais.cli.commands.containers import _api, _confirm, _print_pruned, _save_tar
from cais.cli.main import CliError


def _auth_header(ctx, image: str) -> dict:  # type: ignore[no-untyped-def]
    """X-Registry-Auth from docker's config.json (through cais.registry's credential store)."""
    try:
        from cais.image.reference import parse
        from cais.registry.credentials import CredentialStore
        creds = CredentialStore().get(parse(image).domain)
    except Exception:
        return {}
    if creds is None:
        return {}
    import base64  # ~3 ms of a start (re, struct): only with credentials
    auth = {"username": creds.username, "password": creds.secret}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(fastjson.dumps(auth).encode()).decode()}


def _print_progress(messages, stream=None, quiet: bool = False) -> str | None:  # type: ignore[no-untyped-def]
    """Docker's progress: per-layer lines (redrawn on a TTY), final status lines; errors raise."""
    out = stream or sys.stdout
    tty = out.isatty()
    ids: list[str] = []
    last = None
    for m in messages:
        if "error" in m:
            raise CliError(m.get("errorDetail", {}).get("message") or m["error"])
        if quiet:
            last = m.get("status") or last
            continue
        if "stream" in m:
            out.write(m["stream"])
            continue
        line = (f"{m['id']}: " if m.get("id") else "") + m.get("status", "") + (
            " " + m["progress"] if m.get("progress") and tty else "")
        if tty and m.get("id"):
            if m["id"] not in ids:
                ids.append(m["id"])
                out.write(line + "\n")
            else:
                up = len(ids) - ids.index(m["id"])
                out.write(f"\x1b[{up}A\x1b[2K\r{line}\x1b[{up}B\r")
        elif not m.get("progressDetail") or not m.get("id"):
            out.write(line + "\n")
        out.flush()
        last = m.get("status") or last
    return last


def pull_image(ctx, image: str, *, quiet: bool = False, stream=None, platform: str | None = None) -> None:  # type: ignore[no-untyped-def]
    name, tag = image, ""
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
    elif "@" not in image:
        tag = "latest"
    try:
        messages = ctx.client.json_lines("POST", "/images/create", {"fromImage": name, "tag": tag,
                                                                    "platform": platform},
                                         headers=_auth_header(ctx, image))
        _print_progress(messages, stream, quiet)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None


def cmd_pull(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("pull", "[OPTIONS] NAME[:TAG|@DIGEST]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("image")
    opts = p.parse_args(args)
    pull_image(ctx, opts.image, quiet=opts.quiet, platform=opts.platform)
    if opts.quiet:
        print(opts.image if ":" in opts.image.rsplit("/", 1)[-1] or "@" in opts.image else f"{opts.image}:latest")
    return 0


def cmd_push(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("push", "[OPTIONS] NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("image")
    opts = p.parse_args(args)
    name, tag = opts.image, ""
    if ":" in opts.image.rsplit("/", 1)[-1]:
        name, tag = opts.image.rsplit(":", 1)
    try:
        _print_progress(ctx.client.json_lines("POST", f"/images/{name}/push", {"tag": tag or "latest"},
                                              headers=_auth_header(ctx, opts.image) or
                                              {"X-Registry-Auth": "e30="}),  # base64 of {}
                        quiet=opts.quiet)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    return 0


def cmd_images(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("images", "[OPTIONS] [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_arg)
    p.add_argument("--format")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("reference", nargs="?")
    opts = p.parse_args(args)
    filters: dict[str, list[str]] = {}
    for f in opts.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    if opts.reference:
        filters.setdefault("reference", []).append(opts.reference)
    images = _api(ctx, "GET", "/images/json", {"all": opts.all, "filters": filters or None})
    from cais.cli import contexts
    rows = contexts.images(images, not opts.no_trunc, opts.digests,
                           opts.digests or "{{.Digest}}" in (opts.format or ""))
    if opts.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
                print(r["ID"])
        return 0
    columns = [("REPOSITORY", "Repository"), ("TAG", "Tag")] + ([("DIGEST", "Digest")] if opts.digests else []) + [
        ("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    raw = [("repository", "Repository", False), ("tag", "Tag", False)] + (
        [("digest", "Digest", False)] if opts.digests else []) + [
        ("image_id", "ID", False), ("created_at", "CreatedAt", False), ("virtual_size", "Size", False)]
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows], raw)
    return 0


def cmd_image_inspect(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    from cais.cli.commands.containers import cmd_inspect
    return cmd_inspect(ctx, ["--type", "image", *args])


def cmd_rmi(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("rmi", "[OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="+")
    opts = p.parse_args(args)
    failed = 0
    for image in opts.images:
        try:
            for entry in _api(ctx, "DELETE", f"/images/{image}", {"force": opts.force, "noprune": opts.no_prune}):
                for k, v in entry.items():
                    print(f"{k}: {v}")
        except CliError as e:
            print(e, file=sys.stderr)
            failed = 1
    return failed


def cmd_tag(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
    p.add_argument("source")
    p.add_argument("target")
    opts = p.parse_args(args)
    repo, tag = opts.target, ""
    if "@" not in opts.target and ":" in opts.target.rsplit("/", 1)[-1]:
        repo, tag = opts.target.rsplit(":", 1)
    _api(ctx, "POST", f"/images/{opts.source}/tag", {"repo": repo, "tag": tag})
    return 0


def cmd_save(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("save", "[OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-o", "--output")
    p.add_argument("images", nargs="+")
    opts = p.parse_args(args)
    return _save_tar(ctx, "/images/get", {"names": opts.images}, opts.output)


def cmd_load(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("load", "[OPTIONS]")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    opts = p.parse_args(args)
    if not opts.input and sys.stdin.isatty():
        raise CliError("requested load from stdin, but stdin is empty")
    try:
        source = open(opts.input, "rb") if opts.input else sys.stdin.buffer  # noqa: SIM115
    except OSError as e:
        raise CliError(f"open {opts.input}: {e.strerror}") from None
    try:
        _print_progress(ctx.client.json_lines("POST", "/images/load", {"quiet": opts.quiet}, source,
                                              headers={"Content-Type": "application/x-tar"}))
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    finally:
        if opts.input:
            source.close()
    return 0


def cmd_import(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("import", "[OPTIONS] file|- [REPOSITORY[:TAG]]")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    opts = p.parse_args(args)
    repo, tag = opts.reference or "", ""
    if repo and ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    try:
        source = sys.stdin.buffer if opts.file == "-" else open(opts.file, "rb")  # noqa: SIM115
    except OSError as e:
        raise CliError(f"open {opts.file}: {e.strerror}") from None
    try:
        last = _print_progress(ctx.client.json_lines(
            "POST", "/images/create", {"fromSrc": "-", "repo": repo, "tag": tag, "changes": opts.change,
                                       "message": opts.message}, source,
            headers={"Content-Type": "application/x-tar"}), quiet=True)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    finally:
        if opts.file != "-":
            source.close()
    print(last)
    return 0


def cmd_history(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("history", "[OPTIONS] IMAGE")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("image")
    opts = p.parse_args(args)
    from cais.cli import contexts
    human = opts.human.lower() not in ("false", "0", "f")
    entries = _api(ctx, "GET", f"/images/{opts.image}/history")
    rows = [contexts.history(e, not opts.no_trunc, human) for e in entries]
    if opts.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    columns = [("IMAGE", "ID"), ("CREATED", "CreatedSince" if human else "CreatedAt"), ("CREATED BY", "CreatedBy"),
               ("SIZE", "Size"), ("COMMENT", "Comment")]
    fmt.output(rows, opts.format, columns, [[r[k] for _, k in columns] for r in rows])
    return 0


def cmd_commit(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("container")
    p.add_argument("reference", nargs="?")
    opts = p.parse_args(args)
    repo, tag = opts.reference or "", ""
    if repo and ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    result = _api(ctx, "POST", "/commit", {"container": opts.container, "repo": repo, "tag": tag,
                                           "comment": opts.message, "author": opts.author, "changes": opts.change,
                                           "pause": opts.pause != "false"}, body={})
    print(result["Id"])
    return 0


_BUILD_FLAGS = (  # docker build's (legacy builder), with its help; --progress is BuildKit's
    (("--add-host",), "append", None, 'Add a custom host-to-IP mapping ("host:ip")'),
    (("--build-arg",), "append", None, "Set build-time variables"),
    (("--cache-from",), "append", "strings", "Images to consider as cache sources"),
    (("--cgroup-parent",), None, None, 'Set the parent cgroup for the "RUN" instructions during build'),
    (("--compress",), "store_true", None, "Compress the build context using gzip"),
    (("--cpu-period",), None, int, "Limit the CPU CFS (Completely Fair Scheduler) period"),
    (("--cpu-quota",), None, int, "Limit the CPU CFS (Completely Fair Scheduler) quota"),
    (("-c", "--cpu-shares"), None, int, "CPU shares (relative weight)"),
    (("--cpuset-cpus",), None, None, "CPUs in which to allow execution (0-3, 0,1)"),
    (("--cpuset-mems",), None, None, "MEMs in which to allow execution (0-3, 0,1)"),
    (("--disable-content-trust",), "store_true", None, "Skip image verification (default true)"),
    (("-f", "--file"), None, None, 'Name of the Dockerfile (Default is "PATH/Dockerfile")'),
    (("--force-rm",), "store_true", None, "Always remove intermediate containers"),
    (("--iidfile",), None, None, "Write the image ID to the file"),
    (("--isolation",), None, None, "Container isolation technology"),
    (("--label",), "append", None, "Set metadata for an image"),
    (("-m", "--memory"), None, "size", "Memory limit"),
    (("--memory-swap",), None, "size", "Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
    (("--network",), None, None, 'Set the networking mode for the RUN instructions during build (default "default")'),
    (("--no-cache",), "store_true", None, "Do not use cache when building the image"),
    (("--platform",), None, None, "Set platform if server is multi-platform capable"),
    (("--progress",), None, None, 'Set type of progress output ("auto", "plain", "tty") (default "auto")'),
    (("--pull",), "store_true", None, "Always attempt to pull a newer version of the image"),
    (("-q", "--quiet"), "store_true", None, "Suppress the build output and print image ID on success"),
    (("--rm",), "store_true", None, "Remove intermediate containers after a successful build (default true)"),
    (("--security-opt",), "append", "strings", "Security options"),
    (("--shm-size",), None, "size", 'Size of "/dev/shm"'),
    (("--squash",), "store_true", None, "Squash newly built layers into a single new layer"),
    (("-t", "--tag"), "append", None, 'Name and optionally a tag in the "name:tag" format'),
    (("--target",), None, None, "Set the target build stage to build."),
    (("--ulimit",), "append", "ulimit", "Ulimit options (default [])"),
)


def parse_build(args: list[str], environ: dict | None = None):  # type: ignore[no-untyped-def]
    """`cais build`'s flags, docker's (forms, errors, exit statuses: cais.cli.args), into a request."""
    from cais.cli.args import size
    from cais.image.build.service import RequestError, cli_request
    p = Parser("build", "[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile")
    for names, action, kind, text in _BUILD_FLAGS:
        metavar = kind if isinstance(kind, str) and kind != "size" else None
        p.add_argument(*names, action=action, default=[] if action == "append" else None, help=text,
                       type=size if kind == "size" else kind if callable(kind) else None, metavar=metavar)
    p.add_argument("context")
    opts = p.parse_args(args)
    if opts.progress not in (None, "auto", "plain", "tty"):
        p.error(f'invalid argument "{opts.progress}" for "--progress" flag: must be one of "auto", "plain" or "tty"')
    try:
        return opts, cli_request(opts.context, tags=opts.tag, file=opts.file, build_args=opts.build_arg,
                                 labels=opts.label, target=opts.target, no_cache=opts.no_cache,
                                 cache_from=opts.cache_from, network=opts.network or "default", iidfile=opts.iidfile,
                                 quiet=opts.quiet, progress=opts.progress or "auto", pull=opts.pull, environ=environ)
    except RequestError as e:
        raise CliError(f"cais build: {e}", 125) from None


def cmd_build(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    """docker build: the context goes as a tar, the flags as docker's query."""
    from cais.cli.runopts import _ulimits
    from cais.image.build.context import ContextError
    from cais.image.build.service import context_tar
    opts, req = parse_build(args)
    try:
        if req.context == "-":
            body, dockerfile = sys.stdin.buffer.read(), None
        else:
            body, dockerfile = context_tar(req.context, req.dockerfile, sys.stdin.buffer)
    except ContextError as e:
        raise CliError(str(e)) from None
    o = req.options
    params = {"t": o.tags, "dockerfile": dockerfile, "nocache": o.no_cache, "q": req.quiet, "target": o.target,
              "buildargs": o.build_args or None, "labels": o.labels or None, "cachefrom": fastjson.dumps(o.cache_from) if o.cache_from else None,
              "networkmode": o.network if o.network != "default" else None, "pull": o.pull,
              "forcerm": opts.force_rm or None, "memory": opts.memory, "memswap": opts.memory_swap,
              "cpushares": opts.cpu_shares, "cpusetcpus": opts.cpuset_cpus, "cpusetmems": opts.cpuset_mems,
              "cpuperiod": opts.cpu_period, "cpuquota": opts.cpu_quota, "shmsize": opts.shm_size,
              "cgroupparent": opts.cgroup_parent, "isolation": opts.isolation, "platform": opts.platform,
              "squash": opts.squash or None, "extrahosts": ",".join(opts.add_host) or None,
              "ulimits": fastjson.dumps(_ulimits(opts.ulimit)) if opts.ulimit else None}
    image_id = None

    def watch(messages):  # type: ignore[no-untyped-def]
        nonlocal image_id
        for m in messages:
            image_id = (m.get("aux") or {}).get("ID") or image_id
            yield m

    try:
        _print_progress(watch(ctx.client.json_lines("POST", "/build", params, body,
                                                    headers={"Content-Type": "application/x-tar"})),
                        quiet=req.quiet)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    if req.quiet and image_id:
        print(image_id)
    if req.iidfile and image_id:
        with open(req.iidfile, "w") as f:
            f.write(image_id)
    return 0


def cmd_image_prune(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("image prune", "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_arg)
    opts = p.parse_args(args)
    if not opts.force and not _confirm("WARNING! This will remove all dangling images.\n"
                                       "Are you sure you want to continue? [y/N] "):
        return 0
    result = _api(ctx, "POST", "/images/prune", {"filters": {"dangling": ["false" if opts.all else "true"]}})
    _print_pruned("Images", [f"{k.lower()}: {v}" for entry in result.get("ImagesDeleted") or [] for k, v in entry.items()],
                  result.get("SpaceReclaimed", 0))
    return 0


def cmd_image_bootstrap(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    """An offline base image from the host's busybox-static, imported through the API."""
    import shutil
    import tempfile
    p = Parser("image bootstrap", "busybox [--tag TAG]")
    p.add_argument("name", choices=["busybox"])
    p.add_argument("--tag", default="busybox:latest")
    opts = p.parse_args(args)
    from cais.image.bootstrap import BootstrapError, busybox_rootfs, find_busybox
    from cais.image.rootfs import tar_tree
    top = tempfile.mkdtemp(prefix="cais-bootstrap-")
    try:
        try:
            rootfs = busybox_rootfs(os.path.join(top, "rootfs"))
        except BootstrapError as e:
            raise CliError(str(e)) from None
        tarball = os.path.join(top, "rootfs.tar")
        with open(tarball, "wb") as out:
            tar_tree(rootfs, out, mtime=int(os.stat(find_busybox()).st_mtime))
        repo, _, tag = opts.tag.rpartition(":") if ":" in opts.tag.rsplit("/", 1)[-1] else (opts.tag, "", "latest")
        with open(tarball, "rb") as source:
            last = _print_progress(ctx.client.json_lines(
                "POST", "/images/create", {"fromSrc": "-", "repo": repo, "tag": tag,
                                           "changes": ['CMD ["sh"]'],
                                           "message": "cais image bootstrap busybox (from Debian busybox-static)"},
                source, headers={"Content-Type": "application/x-tar"}), quiet=True)
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}") from None
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"{opts.tag}: {last}")
    return 0


def cmd_login(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("login", "[OPTIONS] [SERVER]")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="docker.io")
    opts = p.parse_args(args)
    password = sys.stdin.readline().rstrip("\n") if opts.password_stdin else opts.password
    if not opts.username or password is None:
        import getpass
        opts.username = opts.username or input("Username: ")
        password = password if password is not None else getpass.getpass("Password: ")
    from cais.registry.credentials import Credentials, CredentialStore
    CredentialStore().store(opts.server, Credentials(opts.username, password))
    print("Login Succeeded")
    return 0


def cmd_logout(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    p = Parser("logout", "[SERVER]")
    p.add_argument("server", nargs="?", default="docker.io")
    opts = p.parse_args(args)
    from cais.registry.credentials import CredentialStore
    if CredentialStore().erase(opts.server):
        print(f"Removing login credentials for {opts.server}")
    else:
        print(f"Not logged in to {opts.server}")
    return 0
