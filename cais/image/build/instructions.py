"""Typed instructions and build stages from the parsed nodes, with docker's flag and argument checks.

Arguments stay as written (unexpanded): the builder expands them with the ARG/ENV values in
scope at each step, only for the instructions docker expands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cais.image.build.parser import DockerfileError, Heredoc, Node, ParsedDockerfile, parse

_STRING, _BOOL, _LIST = "string", "bool", "list"
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _LIST, "network": _STRING, "security": _STRING},
    "COPY": {"from": _STRING, "chown": _STRING, "chmod": _STRING, "link": _BOOL, "parents": _BOOL,
             "exclude": _LIST},
    "ADD": {"chown": _STRING, "chmod": _STRING, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _STRING,
            "exclude": _LIST},
    "HEALTHCHECK": {"interval": _STRING, "timeout": _STRING, "start-period": _STRING,
                    "start-interval": _STRING, "retries": _STRING},
}
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


def parse_flags(node: Node) -> dict[str, str | bool | list[str]]:
    spec = FLAGS.get(node.keyword, {})
    values: dict[str, str | bool | list[str]] = {}
    for raw in node.flags:
        if not raw.startswith("--"):
            raise DockerfileError(f"invalid flag {raw!r}")
        name, has_value, value = raw[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(f"unknown flag: {name}" if name else "invalid flag '--'")
        if name in values and kind != _LIST:
            raise DockerfileError(f"duplicate flag specified: {name}")
        if kind == _BOOL:
            if has_value and value.lower() not in ("true", "false"):
                raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}")
            values[name] = not has_value or value.lower() == "true"
        elif not has_value:
            raise DockerfileError(f"missing a value on flag: {name}")
        elif kind == _LIST:
            values.setdefault(name, [])
            values[name].append(value)  # type: ignore[union-attr]
        else:
            values[name] = value
    return values


@dataclass
class Command:
    node: Node

    @property
    def line(self) -> int:
        return self.node.line

    @property
    def keyword(self) -> str:
        return self.node.keyword

    def __str__(self) -> str:
        return self.node.original


@dataclass
class FromCmd(Command):
    image: str
    name: str | None
    platform: str | None


@dataclass
class RunCmd(Command):
    args: list[str]
    shell_form: bool
    network: str | None = None
    mounts: list[str] = field(default_factory=list)
    security: str | None = None

    @property
    def heredocs(self) -> list[Heredoc]:
        return self.node.heredocs


@dataclass
class CopyCmd(Command):
    """COPY and ADD (`add` True)."""

    add: bool
    sources: list[str]
    dest: str
    source_stage: str | None = None  # --from
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: list[str] = field(default_factory=list)
    checksum: str | None = None
    keep_git_dir: bool = False

    @property
    def heredocs(self) -> list[Heredoc]:
        return self.node.heredocs


@dataclass
class EnvCmd(Command):
    pairs: list[tuple[str, str]]


@dataclass
class LabelCmd(Command):
    pairs: list[tuple[str, str]]


@dataclass
class ArgCmd(Command):
    args: list[tuple[str, str | None]]


@dataclass
class MaintainerCmd(Command):
    name: str


@dataclass
class ExposeCmd(Command):
    ports: list[str]


@dataclass
class VolumeCmd(Command):
    paths: list[str]


@dataclass
class UserCmd(Command):
    user: str


@dataclass
class WorkdirCmd(Command):
    path: str


@dataclass
class CmdCmd(Command):
    args: list[str]
    shell_form: bool


@dataclass
class EntrypointCmd(Command):
    args: list[str]
    shell_form: bool


@dataclass
class ShellCmd(Command):
    args: list[str]


@dataclass
class StopSignalCmd(Command):
    signal: str


@dataclass
class HealthcheckCmd(Command):
    test: list[str]  # ["NONE"] | ["CMD", ...] | ["CMD-SHELL", "..."]
    interval: int = 0  # nanoseconds, 0 = inherit/default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass
class OnbuildCmd(Command):
    expression: str


@dataclass
class Stage:
    index: int
    name: str | None
    base: str  # as written: expanded with the meta ARGs at build time
    platform: str | None
    line: int
    commands: list[Command] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    stages: list[Stage]
    meta_args: list[ArgCmd]
    parsed: ParsedDockerfile

    @property
    def filename(self) -> str:
        return self.parsed.filename

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or by index."""
        for stage in self.stages:
            if stage.name is not None and stage.name == ref.lower():
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def load(text: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile into stages of typed instructions; DockerfileError on any problem."""
    parsed = parse(text, filename)
    stages: list[Stage] = []
    meta: list[ArgCmd] = []
    for node in parsed.nodes:
        try:
            cmd = command(node)
        except DockerfileError as e:
            raise DockerfileError(e.message, filename, node.line) from None
        if isinstance(cmd, FromCmd):
            if cmd.name is not None and any(s.name == cmd.name for s in stages):
                raise DockerfileError(f"duplicate stage name {cmd.name!r}", filename, node.line)
            stages.append(Stage(len(stages), cmd.name, cmd.image, cmd.platform, node.line))
        elif not stages:
            if not isinstance(cmd, ArgCmd):
                raise DockerfileError(f"{node.keyword} before the first FROM (only ARG may come before FROM)",
                                      filename, node.line)
            meta.append(cmd)
        else:
            stages[-1].commands.append(cmd)
    if not stages:
        raise DockerfileError("the Dockerfile has no FROM instruction: nothing to build", filename)
    return Dockerfile(stages, meta, parsed)


def command(node: Node) -> Command:
    flags = parse_flags(node)
    build = _BUILDERS[node.keyword]
    return build(node, flags)


def _exactly_one(node: Node) -> str:
    if len(node.args) != 1:
        raise DockerfileError(f"{node.keyword} requires exactly one argument")
    return node.args[0]


def _from(node: Node, flags: dict) -> FromCmd:
    args = node.args
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(f"invalid name for build stage: {args[2]!r}, "
                                  "name can't start with a number or contain symbols")
        return FromCmd(node, args[0], name, flags.get("platform"))
    if len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    return FromCmd(node, args[0], None, flags.get("platform"))


def _run(node: Node, flags: dict) -> RunCmd:
    if not node.args and not node.json:
        raise DockerfileError("RUN requires at least one argument")
    return RunCmd(node, node.args, not node.json, flags.get("network"), flags.get("mount", []),
                  flags.get("security"))


def _copy(node: Node, flags: dict) -> CopyCmd:
    add = node.keyword == "ADD"
    if len(node.args) < 2:
        raise DockerfileError(f"{node.keyword} requires at least two arguments, but only "
                              f"{'one was' if node.args else 'none were'} provided. Destination could not be determined.")
    if not add and node.heredocs and flags.get("from"):
        raise DockerfileError("COPY --from cannot be used with here-documents")
    return CopyCmd(node, add, node.args[:-1], node.args[-1], flags.get("from"), flags.get("chown"),
                   flags.get("chmod"), bool(flags.get("link")), bool(flags.get("parents")),
                   flags.get("exclude", []), flags.get("checksum"), bool(flags.get("keep-git-dir")))


def _pairs(node: Node) -> list[tuple[str, str]]:
    pairs = list(zip(node.args[::2], node.args[1::2], strict=True))
    return pairs


def _env(node: Node, flags: dict) -> EnvCmd:
    pairs = _pairs(node)
    if any(not k for k, _ in pairs):
        raise DockerfileError("ENV names can not be blank")
    return EnvCmd(node, pairs)


def _label(node: Node, flags: dict) -> LabelCmd:
    pairs = _pairs(node)
    if any(not k for k, _ in pairs):
        raise DockerfileError("LABEL names can not be blank")
    return LabelCmd(node, pairs)


def _arg(node: Node, flags: dict) -> ArgCmd:
    if not node.args:
        raise DockerfileError("ARG requires at least one argument")
    args: list[tuple[str, str | None]] = []
    for word in node.args:
        name, has_value, value = word.partition("=")
        if not name:
            raise DockerfileError("ARG names can not be blank")
        args.append((name, value if has_value else None))
    return ArgCmd(node, args)


def _list_required(node: Node) -> list[str]:
    if not node.args:
        raise DockerfileError(f"{node.keyword} requires at least one argument")
    return node.args


def _cmd(node: Node, flags: dict) -> CmdCmd:
    return CmdCmd(node, node.args, not node.json)


def _entrypoint(node: Node, flags: dict) -> EntrypointCmd:
    return EntrypointCmd(node, node.args, not node.json)


def _shell(node: Node, flags: dict) -> ShellCmd:
    if not node.json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    if not node.args:
        raise DockerfileError("SHELL requires at least one argument")
    return ShellCmd(node, node.args)


def _healthcheck(node: Node, flags: dict) -> HealthcheckCmd:
    if not node.args:
        raise DockerfileError("HEALTHCHECK requires at least one argument")
    kind, rest = node.args[0].upper(), node.args[1:]
    if kind == "NONE":
        if rest or flags:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckCmd(node, ["NONE"])
    if kind != "CMD":
        raise DockerfileError(f"Unknown type {node.args[0]!r} in HEALTHCHECK (try CMD)")
    if not rest:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ["CMD", *rest] if node.json else ["CMD-SHELL", *rest]
    retries = 0
    if "retries" in flags:
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise DockerfileError(f"invalid --retries value {flags['retries']!r}") from None
        if retries < 0:
            raise DockerfileError(f"--retries cannot be negative ({retries})")
    return HealthcheckCmd(node, test, _interval(flags, "interval"), _interval(flags, "timeout"),
                          _interval(flags, "start-period"), _interval(flags, "start-interval"), retries)


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """A Go duration ("1m30s", "500ms", "0") in nanoseconds."""
    if text == "0":
        return 0
    total, pos = 0.0, 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("time: invalid duration \"\"")
    return int(total)


def _interval(flags: dict, name: str) -> int:
    value = flags.get(name, "")
    if not value:
        return 0
    try:
        ns = parse_duration(value)
    except ValueError as e:
        raise DockerfileError(f"--{name}: {e}") from None
    if 0 < ns < 1_000_000 or ns < 0:
        raise DockerfileError(f"Interval {name!r} cannot be less than 1ms")
    return ns


def _onbuild(node: Node, flags: dict) -> OnbuildCmd:
    assert node.trigger is not None
    command(node.trigger)  # validate the trigger now, as docker does
    return OnbuildCmd(node, node.args[0])


_BUILDERS = {
    "FROM": _from,
    "RUN": _run,
    "COPY": _copy,
    "ADD": _copy,
    "ENV": _env,
    "LABEL": _label,
    "ARG": _arg,
    "MAINTAINER": lambda node, flags: MaintainerCmd(node, _exactly_one(node)),
    "EXPOSE": lambda node, flags: ExposeCmd(node, _list_required(node)),
    "VOLUME": lambda node, flags: VolumeCmd(node, _list_required(node)),
    "USER": lambda node, flags: UserCmd(node, _exactly_one(node)),
    "WORKDIR": lambda node, flags: WorkdirCmd(node, _exactly_one(node)),
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "SHELL": _shell,
    "STOPSIGNAL": lambda node, flags: StopSignalCmd(node, _exactly_one(node)),
    "HEALTHCHECK": _healthcheck,
    "ONBUILD": _onbuild,
}
