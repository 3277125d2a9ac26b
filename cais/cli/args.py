"""Command-line flags the docker way (Go's pflag, as cobra uses it), for every `cais` command.

`--flag value`, `--flag=value`, `-f value`, `-fvalue`, `-f=value`, bundled shorthands (`-it`),
`--bool=false`, `--` ends the flags; with `interspersed=False` (run, create, exec) the first
positional argument ends them too, so a container's command keeps its own flags. Errors are
docker's words and exit statuses (125 for a flag, 1 for a missing argument). The calls mirror
argparse's (`add_argument`, `parse_args`) but nothing is built or formatted until `--help`:
argparse cost a `cais run` ~20 ms to set up its 80 flags.
"""

from __future__ import annotations

from cais.cli.main import CliError

TYPE_CHECKING = False  # collections.abc imports collections (~2 ms of a start); annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable


class ArgumentTypeError(ValueError):
    """A flag's value is invalid; the message says why (docker appends it to its own)."""


class Namespace:
    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Namespace({self.__dict__!r})"


class _Flag:
    __slots__ = ("names", "dest", "action", "type", "default", "choices", "help", "metavar")

    def __init__(self, names: tuple[str, ...], dest: str, action: str, type: Callable | None, default: object,
                 choices: list[str] | None, help: str, metavar: str | None) -> None:
        self.names, self.dest, self.action, self.type = names, dest, action, type
        self.default, self.choices, self.help, self.metavar = default, choices, help, metavar

    def label(self) -> str:
        """As docker names a flag in its errors: `-m, --memory` or `--cpus`."""
        short = [n for n in self.names if not n.startswith("--")]
        return ", ".join(short[:1] + [n for n in self.names if n.startswith("--")][:1])


_TYPE_NAMES = {"int": "int", "size": "bytes", "duration_ns": "duration", "cpus": "decimal"}
_TRUE, _FALSE = ("1", "t", "T", "true", "TRUE", "True"), ("0", "f", "F", "false", "FALSE", "False")


class Parser:
    def __init__(self, prog: str, usage: str, description: str = "", *, interspersed: bool = True) -> None:
        self.prog = f"cais {prog}"
        self.usage = f"cais {prog} {usage}"
        self.description = description
        self.interspersed = interspersed
        self._long: dict[str, _Flag] = {}
        self._short: dict[str, _Flag] = {}
        self._flags: list[_Flag] = []
        self._positionals: list[tuple[str, str | None]] = []
        self.add_argument("--help", action="help", help="Print usage")

    def add_argument(self, *names: str, action: str | None = None, nargs: str | None = None,
                     type: Callable | None = None, default: object = None, choices: list[str] | None = None,
                     dest: str | None = None, help: str = "", metavar: str | None = None) -> None:
        if not names[0].startswith("-"):
            self._positionals.append((names[0], nargs))
            return
        if dest is None:
            dest = next((n for n in names if n.startswith("--")), names[0]).lstrip("-").replace("-", "_")
        if action in ("store_true", "help") and default is None:
            default = False  # a store_true flag with default=True is turned off by --flag=false
        flag = _Flag(names, dest, action or "store", type, default, choices, help, metavar)
        self._flags.append(flag)
        for name in names:
            if name.startswith("--"):
                self._long[name[2:]] = flag
            else:
                self._short[name[1:]] = flag

    def error(self, message: str) -> None:
        """A flag error, as docker prints it: exit status 125."""
        raise CliError(f"{message}\n\nUsage:  {self.usage}\n\nRun '{self.prog} --help' for more information", 125)

    def _arguments_error(self, message: str) -> None:
        raise CliError(f"cais: '{self.prog}' {message}\n\nUsage:  {self.usage}\n\n"
                       f"See '{self.prog} --help' for more information", 1)

    def parse_args(self, args: list[str]) -> Namespace:
        values: dict[str, object] = {}
        for flag in self._flags:
            values[flag.dest] = list(flag.default) if isinstance(flag.default, list) else flag.default
        positionals: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                positionals += args[i:]
                break
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                flag = self._long.get(name)
                if flag is None:
                    self.error(f"unknown flag: --{name}")
                if flag.action in ("store_true", "help"):
                    self._set_bool(values, flag, value if eq else None, f"--{name}")
                    continue
                if not eq:
                    if i >= len(args):
                        self.error(f"flag needs an argument: --{name}")
                    value = args[i]
                    i += 1
                self._set(values, flag, value)
            elif arg.startswith("-") and arg != "-":
                i = self._shorthands(values, arg, args, i)
            else:
                positionals.append(arg)
                if not self.interspersed:
                    positionals += args[i:]
                    break
        self._assign(values, positionals)
        return Namespace(**values)

    parse_intermixed_args = parse_args

    def _shorthands(self, values: dict, arg: str, args: list[str], i: int) -> int:
        """`-abc`, `-e VALUE`, `-eVALUE`, `-e=VALUE`: returns the index of the next argument."""
        j = 1
        while j < len(arg):
            char = arg[j]
            flag = self._short.get(char)
            if flag is None:
                if char == "h" and "h" not in self._short:
                    self._set_bool(values, self._long["help"], None, "-h")
                self.error(f"unknown shorthand flag: '{char}' in {arg}")
            rest = arg[j + 1:]
            if flag.action in ("store_true", "help"):
                if rest.startswith("="):
                    self._set_bool(values, flag, rest[1:], f"-{char}")
                    return i
                self._set_bool(values, flag, None, f"-{char}")
                j += 1
                continue
            if rest:
                self._set(values, flag, rest[1:] if rest.startswith("=") else rest)
                return i
            if i >= len(args):
                self.error(f"flag needs an argument: '{char}' in -{char}")
            self._set(values, flag, args[i])
            return i + 1
        return i

    def _set_bool(self, values: dict, flag: _Flag, text: str | None, name: str) -> None:
        if flag.action == "help":
            raise CliError(self.format_help(), 0)
        if text is None or text in _TRUE:
            values[flag.dest] = True
        elif text in _FALSE:
            values[flag.dest] = False
        else:
            self.error(f'invalid argument "{text}" for "{flag.label()}" flag: strconv.ParseBool: parsing '
                       f'"{text}": invalid syntax')

    def _set(self, values: dict, flag: _Flag, text: str) -> None:
        value: object = text
        if flag.choices is not None and text not in flag.choices:
            names = ", ".join(f'"{c}"' for c in flag.choices[:-1]) + f' or "{flag.choices[-1]}"'
            self.error(f'invalid argument "{text}" for "{flag.label()}" flag: must be one of {names}')
        if flag.type is not None:
            try:
                value = flag.type(text)
            except ArgumentTypeError as e:
                self.error(f'invalid argument "{text}" for "{flag.label()}" flag: {e}')
            except ValueError:
                self.error(f'invalid argument "{text}" for "{flag.label()}" flag: strconv.ParseInt: parsing '
                           f'"{text}": invalid syntax')
        if flag.action == "append":
            values[flag.dest].append(value)  # type: ignore[union-attr]
        else:
            values[flag.dest] = value

    def _assign(self, values: dict, given: list[str]) -> None:
        """Positional arguments to their names, with docker's messages when there are too few or many."""
        low = sum(1 for _, n in self._positionals if n in (None, "+"))
        high = None if any(n in ("*", "+") for _, n in self._positionals) else \
            sum(1 for _, n in self._positionals if n in (None, "?"))
        if len(given) < low or (high is not None and len(given) > high):
            s = "" if (high if low == high else low) == 1 else "s"
            if high == 0:
                self._arguments_error("accepts no arguments")
            elif low == high:
                self._arguments_error(f"requires {low} argument{s}")
            elif high is None:
                self._arguments_error(f"requires at least {low} argument{s}")
            elif low == 0:
                self._arguments_error(f"accepts at most {high} argument{'' if high == 1 else 's'}")
            else:
                self._arguments_error(f"requires at least {low} and at most {high} arguments")
        spare = len(given) - low
        k = 0
        for name, nargs in self._positionals:
            if nargs is None:
                values[name], k = given[k], k + 1
            elif nargs == "?":
                take = 1 if spare > 0 else 0
                spare -= take
                values[name], k = (given[k] if take else None), k + take
            else:
                take = spare + (1 if nargs == "+" else 0)
                spare = 0
                values[name], k = given[k:k + take], k + take

    def format_help(self) -> str:
        rows = []
        for flag in sorted(self._flags, key=lambda f: next((n for n in f.names if n.startswith("--")),
                                                           f.names[0]).lstrip("-")):
            short = [n for n in flag.names if not n.startswith("--")]
            long = [n for n in flag.names if n.startswith("--")]
            left = (f"  {short[0]}, " if short else "      ") + (long[0] if long else "")
            if flag.action == "append":
                left += " " + (flag.metavar or "list")
            elif flag.action == "store":
                left += " " + (flag.metavar or _TYPE_NAMES.get(getattr(flag.type, "__name__", ""), "string"))
            rows.append((left, flag.help))
        width = max(len(left) for left, _ in rows) + 3
        text = f"Usage:  {self.usage}\n\n"
        if self.description:
            text += f"{self.description}\n\n"
        return text + "Options:\n" + "".join(f"{left.ljust(width)}{help}".rstrip() + "\n" for left, help in rows)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def filter_arg(text: str) -> str:
    """A --filter value: name=value, refused before the daemon is asked (docker's exit status 125)."""
    if "=" not in text:
        raise ArgumentTypeError("bad format of filter (expected name=value)")
    return text


_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
            "kernel.shmmni", "kernel.shm_rmid_forced"}


def sysctl_arg(text: str) -> str:
    """A --sysctl the docker client lets through: namespaced ones only (IPC's, net.*, fs.mqueue.*)."""
    name, eq, _ = text.partition("=")
    if not eq or (name not in _SYSCTLS and not name.startswith(("net.", "fs.mqueue."))):
        raise ArgumentTypeError(f"sysctl '{text}' is not allowed")
    return text


def size(text: str) -> int:
    """docker's sizes: 512, 64k, 1.5g, 100MB, 2GiB (binary units)."""
    value = text.strip().lower()
    for suffix in ("ib", "b"):
        if value.endswith(suffix) and len(value) > len(suffix) and value[-len(suffix) - 1] in "kmgt":
            value = value[:-len(suffix)]
            break
    unit = value[-1:] if value[-1:] in ("b", "k", "m", "g", "t") else ""
    number = value[:len(value) - len(unit)].strip()
    if not number or not number.isascii() or not number.replace(".", "", 1).isdigit() or not number[0].isdigit():
        raise ArgumentTypeError(f"invalid size: '{text}'")
    return int(float(number) * _SIZE_UNITS[unit])


def duration_ns(text: str) -> int:
    """Go durations: 1m30s, 500ms, 10s."""
    rest = text.strip()
    if rest in ("0", ""):
        return 0
    total = 0.0
    while rest:
        n = 0
        while n < len(rest) and (rest[n].isdigit() or rest[n] == "."):
            n += 1
        u = n
        while u < len(rest) and not (rest[u].isdigit() or rest[u] == "."):
            u += 1
        number, unit, rest = rest[:n], rest[n:u], rest[u:]
        if not number or unit not in _DURATION_UNITS or number.count(".") > 1 or number == ".":
            raise ArgumentTypeError(f"invalid duration: '{text}'")
        total += float(number) * _DURATION_UNITS[unit]
    return int(total)


def cpus(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"failed to parse {text} as a rational number") from None
    return int(value * 1e9)
