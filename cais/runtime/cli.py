"""cais-runtime: the runc-compatible command line. It parses arguments and calls one verb each."""

from __future__ import annotations

import os
import sys

from cais.runtime import DEFAULT_ROOT
from cais.runtime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from cais.runtime.launch import Bootstrap
    from cais.runtime.log import Log

VERSION = "0.1.0"


def _signal(text: str) -> int:
    import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)

    if text.isdigit():
        return int(text)
    name = text.upper().removeprefix("SIG")
    for base, sign in (("RTMIN+", 1), ("RTMAX-", -1)):  # systemd stops on SIGRTMIN+3
        if name.startswith(base) and name[len(base):].isdigit():
            return getattr(_signal, "SIG" + base[:-1]) + sign * int(name[len(base):])
    try:
        if not name.isalnum():  # not SIG_DFL, SIG_BLOCK...: signal names only
            raise AttributeError(name)
        return int(getattr(_signal, "SIG" + name))
    except AttributeError:
        raise RuntimeFailure(f"unknown signal {text!r}") from None


class _Opt:
    """An option or positional of the command line. Both parsers read these: argparse (help, errors,
    anything unusual) and _fast_parse (the usual lines of engines, without argparse's imports)."""

    __slots__ = ("flags", "kind", "default", "choices", "help", "dest")

    def __init__(self, *flags: str, kind: str = "value", default: Any = None, choices: tuple[str, ...] = (),
                 help: str | None = None) -> None:
        # kind: value, int, flag, append, append-int; positionals: positional, optional, remainder
        self.flags, self.kind, self.choices, self.help = flags, kind, choices, help
        self.default = [] if kind.startswith("append") else False if kind == "flag" else default
        self.dest = flags[-1].lstrip("-").replace("-", "_")


_HIDDEN = "==SUPPRESS=="  # argparse.SUPPRESS, without importing argparse
_GLOBAL = (
    _Opt("--root", default=DEFAULT_ROOT, help="directory of container state (default %(default)s)"),
    _Opt("--log", help="log file (default: stderr)"),
    _Opt("--log-format", choices=("text", "json"), default="text"),
    _Opt("--systemd-cgroup", kind="flag", help="cgroupsPath is slice:prefix:name"),
    _Opt("--debug", kind="flag"),
    _Opt("--rootless", default="auto"),
    _Opt("--criu", help=_HIDDEN),
    _Opt("-v", "--version", kind="flag"),
)
_ID = _Opt("id", kind="positional")
_CREATING = (
    _Opt("-b", "--bundle", default="."), _Opt("--pid-file"), _Opt("--console-socket"), _Opt("--no-pivot", kind="flag"),
    _Opt("--no-new-keyring", kind="flag"), _Opt("--preserve-fds", kind="int", default=0),
    _Opt("-d", "--detach", kind="flag"), _Opt("--no-subreaper", kind="flag"),
)
_FORMAT = _Opt("-f", "--format", choices=("table", "json"), default="table")
_UPDATE_FLAGS = ("--memory", "--memory-reservation", "--memory-swap", "--kernel-memory", "--cpu-shares",
                 "--cpu-quota", "--cpu-period", "--cpu-rt-period", "--cpu-rt-runtime", "--cpuset-cpus",
                 "--cpuset-mems", "--pids-limit", "--blkio-weight")
_VERBS: dict[str, tuple[str, tuple[_Opt, ...]]] = {
    "spec": ("write a default config.json", (_Opt("-b", "--bundle", default="."), _Opt("--rootless", kind="flag"))),
    "create": ("create a container (its init waits for `start`)", (_ID, *_CREATING)),
    "start": ("start a created container", (_ID,)),
    "run": ("create and start a container", (_ID, *_CREATING)),
    "state": ("print the OCI state of a container", (_ID,)),
    "kill": ("send a signal to a container", (_ID, _Opt("signal", kind="optional", default="SIGTERM"),
                                              _Opt("-a", "--all", kind="flag"))),
    "delete": ("delete a container", (_ID, _Opt("-f", "--force", kind="flag"))),
    "list": ("list containers", (_FORMAT, _Opt("-q", "--quiet", kind="flag"))),
    "events": ("print resource usage and OOM kills of a container (JSON lines)", (
        _ID, _Opt("--stats", kind="flag", help="print the stats once and exit"),
        _Opt("--interval", default="5s", help="time between two stats events (default %(default)s)"))),
    "ps": ("list the processes of a container", (_ID, _FORMAT, _Opt("ps_args", kind="remainder"))),
    "exec": ("run a process in a running container", (
        _ID, _Opt("-p", "--process"), _Opt("-t", "--tty", kind="flag"), _Opt("-d", "--detach", kind="flag"),
        _Opt("--pid-file"), _Opt("--console-socket"), _Opt("--cwd"), _Opt("-e", "--env", kind="append"),
        _Opt("-u", "--user"), _Opt("-g", "--additional-gids", kind="append-int"), _Opt("-c", "--cap", kind="append"),
        _Opt("--no-new-privs", kind="flag"), _Opt("--preserve-fds", kind="int", default=0),
        _Opt("--process-label", help=_HIDDEN), _Opt("--apparmor", help=_HIDDEN),
        _Opt("--ignore-paused", kind="flag", help=_HIDDEN), _Opt("command", kind="remainder"))),
    "pause": ("freeze every process of a container", (_ID,)),
    "resume": ("thaw a paused container", (_ID,)),
    "update": ("change the resource limits of a container", (
        _ID, _Opt("-r", "--resources", help="linux.resources JSON file ('-' for stdin)"),
        *(_Opt(flag) for flag in _UPDATE_FLAGS))),
    "features": ("print the features of this runtime (JSON)", ()),
}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """argparse's parser of the command line; with ``only``, of that verb alone (building all of
    them costs more than the rest of a command's parsing: argparse formats every argument)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            verb = self.prog.removeprefix("cais-runtime").strip()
            raise RuntimeFailure(f"{verb}: {message}" if verb else message)

    def add(parser: argparse.ArgumentParser, opt: _Opt) -> None:
        kwargs: dict[str, Any] = {"help": opt.help}
        if opt.kind in ("positional", "optional", "remainder"):
            kwargs.update({"optional": {"nargs": "?", "default": opt.default},
                           "remainder": {"nargs": argparse.REMAINDER}}.get(opt.kind, {}))
        elif opt.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs["default"] = opt.default
            kwargs.update({"int": {"type": int}, "append": {"action": "append"},
                           "append-int": {"action": "append", "type": int}}.get(opt.kind, {}))
            if opt.choices:
                kwargs["choices"] = opt.choices
        parser.add_argument(*opt.flags, **kwargs)

    p = _Parser(prog="cais-runtime", description="An OCI runtime (runc-compatible command line).")
    for opt in _GLOBAL:
        add(p, opt)
    sub = p.add_subparsers(dest="verb", parser_class=_Parser)
    for name, (helptext, opts) in _VERBS.items():
        if only is None or name == only:
            v = sub.add_parser(name, help=helptext)
            for opt in opts:
                add(v, opt)
    return p


class _Args:
    """What _fast_parse found: the attributes of argparse's Namespace for the same line."""

    verb: str

    def __init__(self, opts: tuple[_Opt, ...]) -> None:
        self.set_defaults(opts)

    def set_defaults(self, opts: tuple[_Opt, ...]) -> None:
        for opt in opts:
            setattr(self, opt.dest, list(opt.default) if isinstance(opt.default, list) else opt.default)


def _fast_parse(argv: list[str]) -> _Args | None:
    """The command line parsed from the tables above without argparse (whose imports, gettext and
    locale among them, cost ~15 ms of each start), for the plain lines engines write: exact option
    names, values as the next word or after `=`, no `--`. Anything else is None: argparse decides
    (and explains errors, and prints help). Positionals are taken as argparse takes them."""
    if "--" in argv:
        return None
    args = _Args(_GLOBAL)
    table = {flag: opt for opt in _GLOBAL for flag in opt.flags}
    pending: list[_Opt] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word.startswith("-"):
            name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
            opt = table.get(name)
            if opt is None or (eq and opt.kind == "flag"):
                return None
            if opt.kind == "flag":
                setattr(args, opt.dest, True)
                continue
            if not eq:
                if i == len(argv) or argv[i].startswith("-"):
                    return None
                value = argv[i]
                i += 1
            if opt.kind.endswith("int"):
                if not (value.isdecimal() and value.isascii()):
                    return None
                value = int(value)  # type: ignore[assignment]
            if opt.choices and value not in opt.choices:
                return None
            if opt.kind.startswith("append"):
                getattr(args, opt.dest).append(value)
            else:
                setattr(args, opt.dest, value)
        elif not hasattr(args, "verb"):
            if word not in _VERBS:
                return None
            args.verb = word
            opts = _VERBS[word][1]
            args.set_defaults(opts)
            table = {flag: opt for opt in opts for flag in opt.flags if flag.startswith("-")}
            pending = [opt for opt in opts if not opt.flags[0].startswith("-")]
        elif pending:
            setattr(args, pending.pop(0).dest, word)
            # argparse takes a run of positionals at once: an optional one is used up (left at its
            # default) when an option or the end follows; a remainder takes every word left.
            if pending and pending[0].kind == "optional" and (i == len(argv) or argv[i].startswith("-")):
                pending.pop(0)
            if pending and pending[0].kind == "remainder":
                setattr(args, pending.pop(0).dest, argv[i:])
                break
        else:
            return None
    if not hasattr(args, "verb") or any(opt.kind == "positional" for opt in pending):
        return None
    return args


def _guess_verb(argv: list[str]) -> str | None:
    """The verb, from a plain look at the command line, for argparse to build its parser alone."""
    values = {flag for opt in _GLOBAL if opt.kind != "flag" for flag in opt.flags}
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if word in values:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in _VERBS else None
    return None


def _early_bootstrap(argv: list[str], verb: str | None) -> Bootstrap | None:
    """For `create` and `run`: the init's interpreter, started before this one even imports its
    argument parser, so that both boot at once. On a guess of the verb: _dispatch drops the
    bootstrap where the guess was wrong."""
    if verb not in ("create", "run"):
        return None
    words = iter(argv)
    preserve = "0"
    for word in words:
        if word == "--preserve-fds":
            preserve = next(words, "")
        elif word.startswith("--preserve-fds="):
            preserve = word.partition("=")[2]
    if not preserve.isdigit():
        return None
    from cais.runtime.launch import Bootstrap

    try:
        return Bootstrap(None, int(preserve))
    except RuntimeFailure:
        return None  # said again, in its place, by _dispatch


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fast = _fast_parse(argv)
    verb = fast.verb if fast is not None else _guess_verb(argv)
    early = _early_bootstrap(argv, verb)
    from cais.runtime.log import Log

    log = Log()
    try:
        args: Any = fast
        if args is None:
            try:
                args = _parser(verb).parse_args(argv)
            except RuntimeFailure:
                if verb is None:
                    raise
                args = _parser().parse_args(argv)  # the guess was wrong, or the line is: the full parser says
        log = Log(args.log, args.log_format)
        if args.version:
            print(f"cais-runtime version {VERSION}\nspec: 1.2.0")
            return 0
        if args.verb is None:
            raise RuntimeFailure("a command is needed (see cais-runtime --help)")
        return _dispatch(args, log, early) or 0
    except RuntimeFailure as e:
        log.error(str(e))
    except OSError as e:
        log.error(f"{e.strerror or e}{' ' + str(e.filename) if e.filename else ''}")
    except KeyboardInterrupt:
        log.error("interrupted")
    except Exception as e:  # noqa: BLE001 - a bug or an input no check foresaw: still one line
        log.error(f"unexpected {type(e).__name__}: {e}")
    finally:
        if early is not None:
            early.abandon()
    return 1


def _dispatch(args: argparse.Namespace, log: Log, early: Bootstrap | None = None) -> int | None:
    root = args.root
    if args.verb == "spec":
        return _spec(args)
    if args.verb in ("create", "run"):
        from cais.runtime.launch import Bootstrap

        # Started before the verbs are even imported: the init's interpreter boots meanwhile.
        boot = early if early is not None and early.preserve_fds == args.preserve_fds else Bootstrap(
            None, args.preserve_fds)
        try:
            return _create_or_run(args, log, boot)
        finally:
            boot.abandon()
    if args.verb == "start":
        from cais.runtime.verbs.start import start

        start(args.id, root=root)
    elif args.verb == "state":
        from cais import fastjson  # engines ask often (podman: every container, every ps)
        from cais.runtime.verbs.state import state

        print(fastjson.dumps(state(args.id, root=root), indent=2))
    elif args.verb == "kill":
        from cais.runtime.verbs.kill import kill

        kill(args.id, _signal(args.signal), root=root, all=args.all)
    elif args.verb == "delete":
        from cais.runtime.errors import ContainerNotFound
        from cais.runtime.verbs.delete import delete

        try:
            delete(args.id, root=root, force=args.force)
        except ContainerNotFound:
            if not args.force:
                raise
    elif args.verb == "list":
        _list(args)
    elif args.verb == "ps":
        _ps(args)
    elif args.verb == "events":
        _events(args)
    elif args.verb == "exec":
        return _exec(args, log)
    elif args.verb in ("pause", "resume"):
        from cais.runtime.verbs import pause

        getattr(pause, args.verb)(args.id, root=root)
    elif args.verb == "update":
        from cais.runtime.verbs.update import update

        update(args.id, _resources(args), root=root)
    elif args.verb == "features":
        import json

        from cais.runtime.verbs.features import features

        print(json.dumps(features(), indent=2))
    return None


def _create_or_run(args: argparse.Namespace, log: Log, boot: Any) -> int:
    opts: dict[str, Any] = dict(
        root=args.root, console_socket=args.console_socket and os.path.abspath(args.console_socket),
        pid_file=args.pid_file and os.path.abspath(args.pid_file), preserve_fds=args.preserve_fds,
        no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring, systemd_cgroup=args.systemd_cgroup,
        warn=log.warning, bootstrap=boot)
    if args.verb == "create":
        from cais.runtime.verbs.create import create

        create(args.id, args.bundle, **opts)
        return 0
    from cais.runtime.verbs.run import run

    return run(args.id, args.bundle, detach=args.detach, **opts)


def _spec(args: argparse.Namespace) -> int:
    import json

    from cais.runtime import spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise RuntimeFailure(f"{path} exists; remove it first")
    with open(path, "w") as f:
        json.dump(spec.default(rootless=args.rootless), f, indent=2)
        f.write("\n")
    return 0


def _list(args: argparse.Namespace) -> None:
    import json

    from cais.runtime.verbs.state import list_containers

    states = list_containers(args.root)
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} {'CREATED':<32} OWNER")
        for s in states:
            print(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} {s['created']:<32} root")


def _duration(text: str) -> float:
    """Seconds in a Go-style duration (``5s``, ``500ms``, ``1m``) or a plain number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    number, scale = text, 1.0
    for unit in units:  # "ms" before "s" and "m"
        if text.endswith(unit):
            number, scale = text[:-len(unit)], units[unit]
            break
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise RuntimeFailure(f"events: invalid --interval {text!r}")
    return seconds


def _events(args: argparse.Namespace) -> None:
    import json

    from cais.runtime.verbs import events

    if args.stats:
        print(json.dumps(events.stats(args.id, root=args.root)))
        return
    interval = _duration(args.interval)

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    events.events(args.id, emit, root=args.root, interval=interval)


def _ps(args: argparse.Namespace) -> None:
    import json

    from cais.runtime.verbs.ps import ps

    pids = ps(args.id, root=args.root)
    if args.format == "json":
        print(json.dumps(pids))
        return
    import subprocess

    out = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    if not lines:
        return
    header = lines[0].split()
    column = header.index("PID") if "PID" in header else 1
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)


def _exec(args: argparse.Namespace, log: Log) -> int:
    from cais.runtime.launch import Bootstrap

    boot = Bootstrap(None, args.preserve_fds)  # boots while we read the state and build the process
    try:
        return _exec_with(boot, args, log)
    finally:
        boot.abandon()


def _exec_with(boot: Any, args: argparse.Namespace, log: Log) -> int:
    from cais.runtime import store
    from cais.runtime.verbs.exec import exec_process
    from cais.runtime.verbs.run import wait_forwarding

    if args.process:
        import json

        try:
            with open(args.process) as f:
                process = json.load(f)
        except (OSError, ValueError) as e:
            raise RuntimeFailure(f"--process {args.process}: {e}") from None
    else:
        if not args.command:
            raise RuntimeFailure("exec: a command (or --process) is required")
        base = store.load(args.root, args.id).config.get("process", {})
        process = {k: v for k, v in base.items() if k not in ("args", "terminal", "rlimits", "oomScoreAdj")}
        process["args"] = args.command[1:] if args.command[0] == "--" else args.command
        process["terminal"] = args.tty
        process["env"] = [*base.get("env", []), *args.env]
        if args.cwd:
            process["cwd"] = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            try:
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            except ValueError:
                raise RuntimeFailure(f"--user {args.user}: numeric UID[:GID] expected") from None
        if args.additional_gids:
            process.setdefault("user", {})["additionalGids"] = args.additional_gids
        if args.cap:
            caps = process.setdefault("capabilities", {})
            for kind in ("bounding", "effective", "permitted", "ambient"):
                caps[kind] = sorted(set(caps.get(kind, [])) | set(args.cap))
        if args.no_new_privs:
            process["noNewPrivileges"] = True
    console_socket = args.console_socket and os.path.abspath(args.console_socket)
    listener = None
    if process.get("terminal") and not console_socket and not args.detach:
        from cais.runtime.terminal import ConsoleListener

        listener = ConsoleListener()  # runc's behaviour: proxy the pty ourselves
        console_socket = listener.path
    try:
        pid = exec_process(args.id, process, root=args.root, console_socket=console_socket,
                           pid_file=args.pid_file and os.path.abspath(args.pid_file), detach=args.detach,
                           preserve_fds=args.preserve_fds, warn=log.warning, bootstrap=boot)
        master = listener.master() if listener else -1
    finally:
        if listener:
            listener.close()
    if args.detach:
        return 0
    if master >= 0:
        from cais.runtime.terminal import proxy

        return proxy(master, pid)
    return wait_forwarding(pid)


def _resources(args: argparse.Namespace) -> dict[str, Any]:
    import json

    if args.resources:
        try:
            if args.resources == "-":
                return json.load(sys.stdin)
            with open(args.resources) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise RuntimeFailure(f"--resources: {e}") from None
    res: dict[str, Any] = {}

    def num(v: str) -> int:
        """A number, with runc's units for sizes: 512m, 1g (powers of 1024); -1 for unlimited."""
        units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        text = v.strip().lower().removesuffix("b")
        scale = units.get(text[-1:], 1)
        try:
            return int(text[:-1] if scale != 1 else text) * scale
        except ValueError:
            raise RuntimeFailure(f"update: {v!r} is not a number") from None

    for flag, (section, key) in {"memory": ("memory", "limit"), "memory_reservation": ("memory", "reservation"),
                                 "memory_swap": ("memory", "swap"), "cpu_shares": ("cpu", "shares"),
                                 "cpu_quota": ("cpu", "quota"), "cpu_period": ("cpu", "period"),
                                 "pids_limit": ("pids", "limit"), "blkio_weight": ("blockIO", "weight")}.items():
        if getattr(args, flag) is not None:
            res.setdefault(section, {})[key] = num(getattr(args, flag))
    for flag, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if getattr(args, flag) is not None:
            res.setdefault("cpu", {})[key] = getattr(args, flag)
    return res


def entry() -> None:
    """The console script: main(), then exit without the interpreter's finalization (tearing down
    every module and a last garbage collection: ~10 ms that nothing needs, once stdio is flushed;
    every file the runtime writes is closed, or replaced atomically, before main returns)."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
