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
    import signal

    if text.isdigit():
        return int(text)
    name = text.upper().removeprefix("SIG")
    for base, sign in (("RTMIN+", 1), ("RTMAX-", -1)):  # systemd stops on SIGRTMIN+3
        if name.startswith(base) and name[len(base):].isdigit():
            return int(getattr(signal.Signals, "SIG" + base[:-1])) + sign * int(name[len(base):])
    try:
        return int(getattr(signal.Signals, "SIG" + name))
    except AttributeError:
        raise RuntimeFailure(f"unknown signal {text!r}") from None


class _Unused:
    """Stands for the parser of a verb not on the command line (see _parser)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the parser of that verb alone (building all of
    them costs more than the rest of a command's parsing: argparse formats every argument)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            verb = self.prog.removeprefix("cais-runtime").strip()
            raise RuntimeFailure(f"{verb}: {message}" if verb else message)

    p = _Parser(prog="cais-runtime", description="An OCI runtime (runc-compatible command line).")
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory of container state (default %(default)s)")
    p.add_argument("--log", help="log file (default: stderr)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true", help="cgroupsPath is slice:prefix:name")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb", parser_class=_Parser)

    def verb(name: str, helptext: str, with_id: bool = True) -> Any:
        if only is not None and name != only:
            return _Unused()
        v = sub.add_parser(name, help=helptext)
        if with_id:
            v.add_argument("id")
        return v

    def creating(v: Any) -> None:
        v.add_argument("-b", "--bundle", default=".")
        v.add_argument("--pid-file")
        v.add_argument("--console-socket")
        v.add_argument("--no-pivot", action="store_true")
        v.add_argument("--no-new-keyring", action="store_true")
        v.add_argument("--preserve-fds", type=int, default=0)
        v.add_argument("-d", "--detach", action="store_true")
        v.add_argument("--no-subreaper", action="store_true")

    s = verb("spec", "write a default config.json", with_id=False)
    s.add_argument("-b", "--bundle", default=".")
    s.add_argument("--rootless", action="store_true")
    creating(verb("create", "create a container (its init waits for `start`)"))
    verb("start", "start a created container")
    creating(verb("run", "create and start a container"))
    verb("state", "print the OCI state of a container")
    k = verb("kill", "send a signal to a container")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    k.add_argument("-a", "--all", action="store_true")
    d = verb("delete", "delete a container")
    d.add_argument("-f", "--force", action="store_true")
    ls = verb("list", "list containers", with_id=False)
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    ev = verb("events", "print resource usage and OOM kills of a container (JSON lines)")
    ev.add_argument("--stats", action="store_true", help="print the stats once and exit")
    ev.add_argument("--interval", default="5s", help="time between two stats events (default %(default)s)")
    ps = verb("ps", "list the processes of a container")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    e = verb("exec", "run a process in a running container")
    e.add_argument("-p", "--process")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--console-socket")
    e.add_argument("--cwd")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user")
    e.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("--process-label", help=argparse.SUPPRESS)
    e.add_argument("--apparmor", help=argparse.SUPPRESS)
    e.add_argument("--ignore-paused", action="store_true", help=argparse.SUPPRESS)
    e.add_argument("command", nargs=argparse.REMAINDER)
    verb("pause", "freeze every process of a container")
    verb("resume", "thaw a paused container")
    u = verb("update", "change the resource limits of a container")
    u.add_argument("-r", "--resources", help="linux.resources JSON file ('-' for stdin)")
    for flag in ("--memory", "--memory-reservation", "--memory-swap", "--kernel-memory", "--cpu-shares",
                 "--cpu-quota", "--cpu-period", "--cpu-rt-period", "--cpu-rt-runtime", "--cpuset-cpus",
                 "--cpuset-mems", "--pids-limit", "--blkio-weight"):
        u.add_argument(flag)
    verb("features", "print the features of this runtime (JSON)", with_id=False)
    return p


# Global options that take a value, for _early_bootstrap's look at the command line.
_GLOBAL_VALUES = ("--root", "--log", "--log-format", "--rootless", "--criu")


_VERBS = ("spec", "create", "start", "run", "state", "kill", "delete", "list", "events", "ps", "exec", "pause",
          "resume", "update", "features")


def _guess_verb(argv: list[str]) -> str | None:
    """The verb, from a plain look at the command line (argparse still decides)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if word in _GLOBAL_VALUES:
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
    verb = _guess_verb(argv)
    early = _early_bootstrap(argv, verb)
    from cais.runtime.log import Log

    log = Log()
    try:
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
    import json

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
        from cais.runtime.verbs.state import state

        print(json.dumps(state(args.id, root=root), indent=2))
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
    import json

    from cais.runtime import store
    from cais.runtime.verbs.exec import exec_process
    from cais.runtime.verbs.run import wait_forwarding

    if args.process:
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
