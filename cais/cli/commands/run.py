"""`run` and `create`: the flags to a container, then (run) its output and exit code.

Not in containers.py with the other container commands: a `run` loads only this module's
bytecode (~11 kB, where containers.py's was ~50 kB with them).
"""

from __future__ import annotations

import sys

from cais import fastjson
from cais.cli.args import Parser
from cais.cli.client import ApiError
from cais.cli.main import CliError


def _pull_if_missing(ctx, image: str, body: dict, name: str | None, policy: str, quiet: bool) -> str:  # type: ignore[no-untyped-def]
    if policy == "always":
        from cais.cli.commands.images import pull_image
        pull_image(ctx, image, quiet=quiet)
    try:
        return ctx.client.call("POST", "/containers/create", {"name": name}, body)["Id"]
    except ApiError as e:
        if e.status != 404 or policy == "never" or "No such image" not in str(e):
            raise CliError(f"Error response from daemon: {e}", 125) from None
    print(f"Unable to find image '{image}' locally", file=sys.stderr)
    from cais.cli.commands.images import pull_image  # only when pulling: ~8 ms of every run's start
    pull_image(ctx, image, quiet=quiet, stream=sys.stderr)
    try:
        return ctx.client.call("POST", "/containers/create", {"name": name}, body)["Id"]
    except ApiError as e:
        raise CliError(f"Error response from daemon: {e}", 125) from None


def _create(ctx, args: list[str], prog: str):  # type: ignore[no-untyped-def]
    from cais.cli.runopts import add_container_flags, container_body
    p = Parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", _DESCRIPTIONS[prog], interspersed=False)
    add_container_flags(p)
    opts = p.parse_args(args)
    body = container_body(opts)
    cid = _pull_if_missing(ctx, opts.image, body, opts.name, opts.pull, opts.quiet)
    return opts, body, cid


_DESCRIPTIONS = {"run": "Create and run a new container from an image", "create": "Create a new container"}


def cmd_create(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    _, _, cid = _create(ctx, args, "create")
    print(cid)
    return 0


def cmd_run(ctx, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    opts, body, cid = _create(ctx, args, "run")
    if opts.detach:
        print(cid, flush=True)  # printed before the start, as docker does
        try:
            ctx.client.call("POST", f"/containers/{cid}/start")
        except ApiError as e:
            raise CliError(f"Error response from daemon: {e}", start_error_status(str(e))) from None
        return 0
    return _run_attached(ctx, cid, tty=opts.tty, stdin=opts.interactive, auto_remove=opts.rm,
                         detach_keys=opts.detach_keys, start_status=start_error_status)


def start_error_status(message: str) -> int:
    """The docker CLI's exit code for a `run` whose container cannot start, read from the daemon's
    words (runStartContainerErr): 127 not found, 126 not executable, else 125."""
    if any(s in message for s in ("executable file not found", "no such file or directory")):
        return 127
    return 126 if "permission denied" in message else 125


def _run_attached(ctx, cid: str, *, tty: bool, stdin: bool, auto_remove: bool, detach_keys: str | None,  # type: ignore[no-untyped-def]
                  start_status=lambda message: 1) -> int:
    """docker's sequence (attach, wait, then start, so that no output and no exit is missed), with
    the attach and wait requests sent together and the wait's answer read once the output ended."""
    client = ctx.client
    params = {"stream": 1, "stdout": 1, "stderr": 1, "stdin": int(stdin)}
    if detach_keys:
        params["detachKeys"] = detach_keys
    condition = "removed" if auto_remove else "next-exit"
    attaching = client.send_hijack(f"/containers/{cid}/attach", params)
    try:
        waiting = client.send("POST", f"/containers/{cid}/wait", {"condition": condition})
    except BaseException:
        attaching.close()
        raise
    from cais.cli import streams  # while the daemon answers
    try:
        sock = client.hijacked(attaching)
    except ApiError as e:
        waiting.close()
        raise CliError(f"Error response from daemon: {e}", 125) from None
    try:
        wait = client.answer(waiting, "POST")
        client.call("POST", f"/containers/{cid}/start")
    except ApiError as e:
        sock.close()
        waiting.close()
        if auto_remove:
            _quietly(client.call, "DELETE", f"/containers/{cid}", {"force": 1})
        raise CliError(f"Error response from daemon: {e}", start_status(str(e))) from None
    with streams.raw_terminal(tty and stdin):
        if tty:
            streams.watch_resize(lambda h, w: _quiet_resize(ctx, f"/containers/{cid}/resize", h, w))
        streams.pump(sock, tty=tty, stdin=stdin)
    sock.close()
    return _exit_status(ctx, cid, wait, detachable=stdin)


def _exit_status(ctx, cid: str, wait, *, detachable: bool) -> int:  # type: ignore[no-untyped-def]
    """The exit code from a wait request's answer, once the output stream ended: the container
    exited — or, with stdin, the user may have detached: then the container still runs (0)."""
    if detachable and not _answered(wait, 1.0):
        state = _container_state(ctx, cid)
        if state is not None and state["Running"]:
            wait.close()
            return 0
    try:
        status = fastjson.loads(wait.readline() or b"{}")
    except (OSError, ValueError) as e:
        raise CliError(f"Error response from daemon: {e}", 125) from None
    finally:
        wait.close()
    if (status.get("Error") or {}).get("Message"):
        raise CliError(f"Error response from daemon: {status['Error']['Message']}", 125)
    return int(status.get("StatusCode", 0))


def _answered(response, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    import select
    return response.buffered() or bool(select.select([response], [], [], timeout)[0])


def _container_state(ctx, cid: str) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        return ctx.client.call("GET", f"/containers/{cid}/json")["State"]
    except (ApiError, OSError):
        return None


def _quiet_resize(ctx, path: str, h: int, w: int) -> None:  # type: ignore[no-untyped-def]
    _quietly(ctx.client.call, "POST", path, {"h": h, "w": w})


def _quietly(call, *args) -> None:  # type: ignore[no-untyped-def]
    """A request whose failure changes nothing for the user (contextlib costs a start ~0.7 ms)."""
    try:
        call(*args)
    except (ApiError, OSError):
        return
