"""What each instruction does to a stage's image config (no file system involved).

`Scope` holds a stage's variables: ENV (in the config) and the ARGs declared so far, with the
build arguments the user gave. Expansion uses ARGs overridden by ENV, as docker does.
"""

from __future__ import annotations

import posixpath
import re
import signal
from dataclasses import dataclass, field
from typing import Any

from cais.image.build.instructions import (
    ArgCmd,
    CmdCmd,
    Command,
    EntrypointCmd,
    EnvCmd,
    ExposeCmd,
    HealthcheckCmd,
    LabelCmd,
    MaintainerCmd,
    OnbuildCmd,
    ShellCmd,
    StopSignalCmd,
    UserCmd,
    VolumeCmd,
    WorkdirCmd,
)
from cais.image.build.parser import DockerfileError
from cais.image.build.shell_words import Lexer, ShellSyntaxError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)


def env_list_to_dict(env: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def set_env(config: dict[str, Any], key: str, value: str) -> None:
    env = list(config.get("Env") or [])
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    config["Env"] = env


@dataclass
class Scope:
    """The variables of one stage: build args given, ARGs declared, meta ARGs, and the config's ENV."""

    build_args: dict[str, str]
    meta: dict[str, str | None]  # ARGs before the first FROM, with their values
    escape: str = "\\"
    declared: dict[str, str | None] = field(default_factory=dict)
    used_build_args: set[str] = field(default_factory=set)

    def declare(self, name: str, default: str | None, config: dict[str, Any]) -> None:
        if name in self.build_args:
            value: str | None = self.build_args[name]
            self.used_build_args.add(name)
        elif default is not None:
            value = self.word(default, config)
        else:
            value = self.meta.get(name)
        self.declared[name] = value

    def variables(self, config: dict[str, Any]) -> dict[str, str]:
        """What `$VAR` sees: declared ARGs with a value, then ENV over them."""
        out = {k: v for k, v in self.declared.items() if v is not None}
        out.update(env_list_to_dict(config.get("Env")))
        return out

    def word(self, text: str, config: dict[str, Any]) -> str:
        try:
            return Lexer(self.escape).process_word(text, self.variables(config))
        except ShellSyntaxError as e:
            raise DockerfileError(str(e)) from None

    def run_env(self, config: dict[str, Any]) -> list[str]:
        """The environment of a RUN: the config's Env, plus ARGs (and proxy args) it does not set."""
        env = list(config.get("Env") or [])
        names = {item.partition("=")[0] for item in env}
        extra = {k: v for k, v in self.declared.items() if v is not None and k not in names}
        for name in PROXY_ARGS:
            if name in self.build_args and name not in names and name not in extra:
                extra[name] = self.build_args[name]
                self.used_build_args.add(name)
        return env + [f"{k}={v}" for k, v in sorted(extra.items())]

    def cache_args(self) -> list[str]:
        """The ARG values that a RUN's result depends on (proxy args are not part of the cache)."""
        return sorted(f"{k}={v}" for k, v in self.declared.items() if v is not None and k not in PROXY_ARGS)


def command_line(args: list[str], shell_form: bool, config: dict[str, Any]) -> list[str]:
    return [*(config.get("Shell") or DEFAULT_SHELL), *args] if shell_form else list(args)


def apply(cmd: Command, config: dict[str, Any], image: dict[str, Any], scope: Scope, state: dict[str, bool]) -> str:
    """Apply a config-only instruction; returns the text recorded in the image history."""
    if isinstance(cmd, EnvCmd):
        pairs = [(scope.word(k, config), scope.word(v, config)) for k, v in cmd.pairs]
        for key, value in pairs:
            set_env(config, key, value)
        return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if isinstance(cmd, LabelCmd):
        pairs = [(scope.word(k, config), scope.word(v, config)) for k, v in cmd.pairs]
        labels = dict(config.get("Labels") or {})
        labels.update(pairs)
        config["Labels"] = labels
        return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if isinstance(cmd, ArgCmd):
        for name, default in cmd.args:
            scope.declare(name, default, config)
        return "ARG " + " ".join(f"{n}={scope.declared[n]}" if scope.declared[n] is not None else n
                                 for n, _ in cmd.args)
    if isinstance(cmd, MaintainerCmd):
        image["author"] = scope.word(cmd.name, config)
        return f"MAINTAINER {image['author']}"
    if isinstance(cmd, ExposeCmd):
        ports = dict(config.get("ExposedPorts") or {})
        for raw in cmd.ports:
            for port in expand_ports(scope.word(raw, config)):
                ports[port] = {}
        config["ExposedPorts"] = ports
        return "EXPOSE " + " ".join(sorted(ports))
    if isinstance(cmd, VolumeCmd):
        volumes = dict(config.get("Volumes") or {})
        for raw in cmd.paths:
            path = scope.word(raw, config).strip()
            if not path:
                raise DockerfileError("VOLUME specified can not be an empty string")
            volumes[path] = {}
        config["Volumes"] = volumes
        return "VOLUME " + str(sorted(volumes))
    if isinstance(cmd, UserCmd):
        config["User"] = scope.word(cmd.user, config)
        return f"USER {config['User']}"
    if isinstance(cmd, WorkdirCmd):
        config["WorkingDir"] = workdir(config.get("WorkingDir") or "/", scope.word(cmd.path, config))
        return f"WORKDIR {config['WorkingDir']}"
    if isinstance(cmd, CmdCmd):
        config["Cmd"] = command_line(cmd.args, cmd.shell_form, config)
        state["cmd_set"] = True
        return f"CMD {config['Cmd']}"
    if isinstance(cmd, EntrypointCmd):
        config["Entrypoint"] = command_line(cmd.args, cmd.shell_form, config) if cmd.args or cmd.shell_form else None
        if not state.get("cmd_set"):
            config["Cmd"] = None
        return f"ENTRYPOINT {config['Entrypoint']}"
    if isinstance(cmd, ShellCmd):
        config["Shell"] = list(cmd.args)
        return f"SHELL {cmd.args}"
    if isinstance(cmd, StopSignalCmd):
        sig = scope.word(cmd.signal, config)
        check_signal(sig)
        config["StopSignal"] = sig
        return f"STOPSIGNAL {sig}"
    if isinstance(cmd, HealthcheckCmd):
        health: dict[str, Any] = {"Test": cmd.test}
        for key, value in (("Interval", cmd.interval), ("Timeout", cmd.timeout), ("StartPeriod", cmd.start_period),
                           ("StartInterval", cmd.start_interval), ("Retries", cmd.retries)):
            if value:
                health[key] = value
        config["Healthcheck"] = health
        return f"HEALTHCHECK {cmd.test}"
    if isinstance(cmd, OnbuildCmd):
        config["OnBuild"] = [*(config.get("OnBuild") or []), cmd.expression]
        return f"ONBUILD {cmd.expression}"
    raise AssertionError(f"not a config instruction: {cmd.keyword}")


def workdir(current: str, path: str) -> str:
    if not path.startswith("/"):
        path = posixpath.join(current, path)
    return posixpath.normpath(path).replace("//", "/")


def expand_ports(spec: str) -> list[str]:
    m = _PORT.match(spec.strip())
    if not m:
        raise DockerfileError(f"Invalid containerPort: {spec}")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    proto = (m.group(3) or "tcp").lower()
    if last < first or last > 65535:
        raise DockerfileError(f"Invalid range specified for the Port: {spec}")
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def check_signal(sig: str) -> None:
    name = sig.upper()
    if sig.isdigit() and 0 < int(sig) < 65:
        return
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX") or hasattr(signal.Signals, name):
        return
    raise DockerfileError(f"Invalid signal: {sig}")
