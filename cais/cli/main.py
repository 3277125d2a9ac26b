"""`cais`: docker's everyday commands, against caisd or, when no daemon runs, an in-process engine.

Startup stays light: only the invoked command's module is imported, and the engine (aiohttp,
the runtime, the image store) only when there is no daemon to talk to.
"""

from __future__ import annotations

import os
import sys

# command -> (module, function); "image ls" style groups are resolved in dispatch()
COMMANDS = {
    "run": "run", "create": "run", "start": "containers", "stop": "containers",
    "restart": "containers", "kill": "containers", "rm": "containers", "ps": "containers", "logs": "containers",
    "exec": "containers", "attach": "containers", "inspect": "containers", "top": "containers",
    "stats": "containers", "cp": "containers", "port": "containers", "rename": "containers", "wait": "containers",
    "pause": "containers", "unpause": "containers", "update": "containers", "diff": "containers",
    "export": "containers", "commit": "images",
    "pull": "images", "push": "images", "images": "images", "rmi": "images", "tag": "images", "save": "images",
    "load": "images", "import": "images", "history": "images", "login": "images", "logout": "images",
    "build": "images", "search": "search",
    "version": "system", "info": "system", "events": "system",
}
GROUPS = {
    "container": {"ls": "ps", "list": "ps", "rm": "rm", "prune": "container_prune", **{c: c for c in (
        "run", "create", "start", "stop", "restart", "kill", "logs", "exec", "attach", "inspect", "top", "stats",
        "cp", "port", "rename", "wait", "pause", "unpause", "update", "diff", "export", "commit")}},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "prune": "image_prune", "bootstrap": "image_bootstrap",
              "inspect": "image_inspect", **{c: c for c in ("pull", "push", "tag", "save", "load", "import",
                                                           "history", "build")}},
    "system": {"info": "info", "df": "system_df", "prune": "system_prune", "events": "events"},
    "network": {"ls": "network_ls", "list": "network_ls", "inspect": "network_inspect",
                "create": "network_create", "rm": "network_rm", "prune": "network_prune",
                "connect": "network_connect", "disconnect": "network_disconnect"},
    "volume": {"ls": "volume_ls", "list": "volume_ls", "inspect": "volume_inspect", "create": "volume_create",
               "rm": "volume_rm", "prune": "volume_prune"},
    "registry": {"serve": "registry_serve"},
}
EXTRA = {"container_prune": "containers", "image_prune": "images", "image_bootstrap": "images",
         "image_inspect": "images", "system_df": "system", "system_prune": "system", "registry_serve": "system",
         **{f"network_{v}": "networks" for v in ("ls", "inspect", "create", "rm", "prune", "connect",
                                                 "disconnect")},
         **{f"volume_{v}": "volumes" for v in ("ls", "inspect", "create", "rm", "prune")}}

USAGE = """Usage:  cais [OPTIONS] COMMAND

A container engine with docker's commands.

Options:
  -H, --host string   daemon socket (default: $CAIS_HOST, $DOCKER_HOST, unix:///run/cais/cais.sock;
                      with no daemon running, commands run in-process)
  -v, --version       print version information and quit
  -D, --debug         enable debug output

Commands:
  run create start stop restart kill rm ps logs exec attach inspect top stats cp port rename wait
  pause unpause update diff export commit pull push images rmi tag save load import history
  login logout build search version info events

Management commands:
  container image network volume system registry

Run 'cais COMMAND --help' for more information on a command.
"""


class CliError(Exception):
    """A one-line error for the user; status is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _global_options(argv: list[str]) -> tuple[dict, list[str]]:
    opts: dict = {"host": None, "debug": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-H", "--host"):
            if i + 1 >= len(argv):
                raise CliError("flag needs an argument: -H")
            opts["host"] = argv[i + 1]
            i += 2
        elif arg.startswith("--host="):
            opts["host"] = arg.split("=", 1)[1]
            i += 1
        elif arg in ("-D", "--debug"):
            opts["debug"] = True
            i += 1
        elif arg in ("-v", "--version"):
            opts["version"] = True
            i += 1
        elif arg in ("-h", "--help"):
            opts["help"] = True
            i += 1
        elif arg.startswith("-") and arg != "-":
            raise CliError(f"unknown flag: {arg}\nSee 'cais --help'.", 125)
        else:
            break
    return opts, argv[i:]


def resolve(args: list[str]) -> tuple[str, str, list[str]]:
    """(module, command, its arguments) for `args` (group commands mapped to flat ones)."""
    name = args[0]
    if name in GROUPS:
        if len(args) < 2 or args[1] in ("-h", "--help"):
            raise CliError(f"Usage:  cais {name} COMMAND\n\nCommands: {' '.join(sorted(GROUPS[name]))}", 0
                           if len(args) > 1 else 1)
        sub = GROUPS[name].get(args[1])
        if sub is None:
            raise CliError(f"cais: '{name} {args[1]}' is not a cais command.\nSee 'cais {name} --help'", 1)
        return COMMANDS.get(sub) or EXTRA[sub], sub, args[2:]
    module = COMMANDS.get(name)
    if module is None:
        raise CliError(f"cais: '{name}' is not a cais command.\nSee 'cais --help'", 1)
    return module, name, args[1:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, rest = _global_options(argv)
        if opts.get("version"):
            from cais import __version__
            print(f"cais version {__version__}")
            return 0
        if opts.get("help") or not rest:
            sys.stdout.write(USAGE)
            return 0
        module_name, command, args = resolve(rest)
        __import__(f"cais.cli.commands.{module_name}")  # importlib itself costs a start ~1.5 ms
        module = sys.modules[f"cais.cli.commands.{module_name}"]
        from cais.cli.context import Context
        ctx = Context(opts.get("host"), debug=opts["debug"])
        try:
            return int(getattr(module, "cmd_" + command)(ctx, args) or 0)
        except (ConnectionError, FileNotFoundError) as e:  # a daemon that is not there, or went away
            if e.filename is not None or (isinstance(e, BrokenPipeError) and _reader_gone()):
                raise  # a local file, or the reader of our output (`cais logs C | head`): not the daemon
            host = ctx.client.host if ctx._client is not None else ctx.explicit
            print(f"Cannot connect to the cais daemon at {host}: {e.strerror or e}", file=sys.stderr)
            return 1
        finally:
            ctx.close()
    except CliError as e:
        if str(e):
            try:
                print(str(e), file=sys.stderr if e.status else sys.stdout)
            except BrokenPipeError:
                _stdout_gone()
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _stdout_gone()
        return 0


def leave(status: int) -> None:
    """Exit with STATUS, skipping the interpreter's finalization (its module teardown and garbage
    collection cost every command ~5 ms) when it has nothing left to do: the output flushed, no
    atexit handler, no thread but daemon ones, and no in-process engine (that one shuts down the
    usual way). Otherwise — or when a flush fails — sys.exit, with Python's usual behaviour."""
    atexit = sys.modules.get("atexit")  # whoever registered a handler imported it
    threading = sys.modules.get("threading")
    nothing_left = ("cais.cli.local" not in sys.modules
                    and (atexit is None or getattr(atexit, "_ncallbacks", lambda: 1)() == 0)
                    and (threading is None or all(t.daemon or t is threading.main_thread()
                                                  for t in threading.enumerate())))
    if nothing_left:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):  # AttributeError: no sys.stdout (fd 1 closed)
            pass
        else:
            os._exit(status & 0xFF)
    sys.exit(status)


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end was closed (what a write's EPIPE was about)."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _stdout_gone() -> None:
    """The reader of our output went away (`cais ... | head`): no traceback at exit either."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    leave(main())
