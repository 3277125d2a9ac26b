"""caisd's settings: dockerd's flags and daemon.json keys where they mean the same.

Precedence as dockerd: a key given both as a flag and in the file is an error; otherwise the
flag, then the file, then the default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import NoReturn

from cais.engine.daemonjson import DEFAULT_CONFIG, namespace_defaults

DEFAULT_SOCKET = "unix:///run/cais/cais.sock"
FILE_KEYS = {"hosts": "hosts", "data-root": "data_root", "exec-root": "exec_root", "pidfile": "pidfile",
             "storage-driver": "storage_driver", "log-level": "log_level", "debug": "debug", "group": "group",
             "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert", "tlskey": "tlskey",
             "cgroup-parent": "cgroup_parent", "init-path": "init_path", "tls": "tls",
             "insecure-tcp": "insecure_tcp", "bridge": "bridge", "dns": "dns", "mtu": "mtu",
             "userns-remap": "userns_remap", "bip": "bip", "fixed-cidr": "fixed_cidr", "ipv6": "ipv6",
             "fixed-cidr-v6": "fixed_cidr_v6", "log-driver": "log_driver", "log-opts": "log_opts",
             "default-ipc-mode": "default_ipc_mode", "default-cgroupns-mode": "default_cgroupns_mode"}
IGNORED_FILE_KEYS = {"live-restore", "default-ulimits", "features", "experimental",
                     "registry-mirrors", "insecure-registries", "iptables", "ip-forward", "ip-masq",
                     "userland-proxy", "default-runtime", "runtimes", "max-concurrent-downloads",
                     "max-concurrent-uploads", "shutdown-timeout", "labels"}


class ConfigError(Exception):
    pass


# the Go type of each daemon.json key caisd reads (the rest are strings): a value of another type is refused
# as dockerd refuses it, before anything starts
_BOOL_KEYS = {"debug", "tls", "tlsverify", "insecure-tcp", "ipv6"}
_LIST_KEYS = {"hosts", "dns"}
_INT_KEYS = {"mtu"}
_MAP_KEYS = {"log-opts"}


def _check_type(path: str, key: str, value: object) -> None:
    if value is None:
        return
    if key in _BOOL_KEYS:
        ok, gotype = isinstance(value, bool), "bool"
    elif key in _LIST_KEYS:
        ok, gotype = isinstance(value, list) and all(isinstance(v, str) for v in value), "[]string"
    elif key in _INT_KEYS:
        ok, gotype = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31, "int"
    elif key in _MAP_KEYS:
        ok, gotype = isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), "map[string]string"
    else:
        ok, gotype = isinstance(value, str), "string"
    if not ok:
        number = f"number {value}" if key in _INT_KEYS else "number"
        kind = {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), number)
        raise ConfigError(f"unable to configure the daemon with file {path}: json: cannot unmarshal {kind} into "
                          f"Go struct field Config.{key} of type {gotype}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # dockerd's wording and exit status, not argparse's usage dump
        sys.stderr.write(f"caisd: {message}\nSee 'caisd --help'.\n")
        sys.exit(1)


@dataclass
class Settings:
    hosts: list[str] = field(default_factory=list)
    data_root: str = "/var/lib/cais"
    exec_root: str = "/run/cais"
    pidfile: str | None = None
    storage_driver: str | None = None
    log_level: str = "info"
    debug: bool = False
    group: str | None = None
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp: bool = False
    cgroup_parent: str = "/cais"
    init_path: str | None = None
    bridge: str = "cais0"
    dns: list[str] = field(default_factory=list)
    mtu: int = 1500
    bip: str = ""
    fixed_cidr: str = ""
    ipv6: bool = False
    fixed_cidr_v6: str = ""
    bridge_ipam: list[dict] = field(default_factory=list)  # derived from bip, fixed_cidr(_v6)
    userns_remap: str | None = None
    log_driver: str = "json-file"
    log_opts: dict = field(default_factory=dict)
    default_ipc_mode: str = "private"
    default_cgroupns_mode: str = ""  # empty: dockerd's, host on cgroup v1 and private on v2
    file: dict = field(default_factory=dict)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="caisd", description="The cais daemon: the Docker Engine API over cais.")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help="socket to listen on: unix:///path or tcp://addr:port (repeatable)")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/cais)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/cais)")
    p.add_argument("-p", "--pidfile", help="pid file (default EXEC_ROOT/caisd.pid)")
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help=f"daemon.json (default {DEFAULT_CONFIG})")
    p.add_argument("-s", "--storage-driver", help="overlay2 (overlay) or vfs")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("-D", "--debug", action="store_true", default=None, help="debug logging")
    p.add_argument("-G", "--group", help="group that may use the unix socket (default: root only)")
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None, help="require client certificates")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-tcp", action="store_true", default=None,
                   help="allow tcp:// without --tlsverify: root on this machine for anyone who can reach the port")
    p.add_argument("--cgroup-parent", help="parent cgroup of containers (default /cais)")
    p.add_argument("--init-path", help="the init binary for --init (default: docker-init, catatonit)")
    p.add_argument("-b", "--bridge", help='Linux bridge of the default "bridge" network (default cais0); '
                   '"none": no default network, containers default to --network none (see docs/network.md)')
    p.add_argument("--dns", action="append", help="DNS server for containers and the embedded DNS (repeatable)")
    p.add_argument("--mtu", type=int, help="MTU of the default bridge network (default 1500)")
    p.add_argument("--bip", help="address/prefix of the default bridge, e.g. 10.66.0.1/24 (its gateway and subnet)")
    p.add_argument("--fixed-cidr", help="IPv4 range of container addresses on the default bridge")
    p.add_argument("--ipv6", action="store_true", default=None,
                   help="IPv6 on the default bridge (subnet: --fixed-cidr-v6, else a unique local /64)")
    p.add_argument("--fixed-cidr-v6", help="IPv6 subnet of the default bridge, e.g. fd00:1::/64")
    p.add_argument("--userns-remap", metavar="default|USER[:GROUP]",
                   help="run containers in user namespaces mapped to the user's /etc/subuid and /etc/subgid "
                   "ranges (default: the cais-remap user, created if missing); see docs/security.md")
    p.add_argument("--log-driver", help="default log driver of containers: json-file, local or none (docs/logging.md)")
    p.add_argument("--log-opt", action="append", dest="log_opts", metavar="KEY=VALUE",
                   help="default log driver option (repeatable)")
    p.add_argument("--default-ipc-mode", help='IPC mode of containers that give none: "private" (default) '
                   'or "shareable"')
    p.add_argument("--default-cgroupns-mode", help='cgroup namespace mode of containers that give none: '
                   '"host" or "private" (default: host on cgroup v1, private on v2)')
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def load(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    args = parser().parse_args(argv)
    file: dict = {}
    if args.config_file and os.path.exists(args.config_file):
        try:
            with open(args.config_file) as f:
                file = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"unable to configure the daemon with file {args.config_file}: {e}") from None
        if not isinstance(file, dict):
            raise ConfigError(f"{args.config_file}: expected a JSON object")
    elif args.config_file != DEFAULT_CONFIG:
        raise ConfigError(f"open {args.config_file}: no such file or directory")
    settings = Settings(file=file)
    conflicts = []
    for key, value in file.items():
        attr = FILE_KEYS.get(key)
        if attr is None:
            if key not in IGNORED_FILE_KEYS:
                raise ConfigError(f"the following directives don't match any configuration option: {key}")
            continue
        _check_type(args.config_file, key, value)
        flag_value = getattr(args, attr, None)
        if flag_value not in (None, False, []):
            conflicts.append(f"{key}: (from flag: {flag_value}, from file: {value})")
        setattr(settings, attr, value)
    if conflicts:
        raise ConfigError("the following directives are specified both as a flag and in the configuration file: "
                          + ", ".join(conflicts))
    for attr in ("hosts", "data_root", "exec_root", "pidfile", "storage_driver", "log_level", "debug", "group",
                 "tls", "tlsverify", "tlscacert", "tlscert", "tlskey", "cgroup_parent", "init_path", "insecure_tcp",
                 "bridge", "dns", "mtu", "userns_remap", "bip", "fixed_cidr", "ipv6", "fixed_cidr_v6", "log_driver",
                 "default_ipc_mode", "default_cgroupns_mode"):
        value = getattr(args, attr, None)
        if value not in (None, []):
            setattr(settings, attr, value)
    if args.log_opts:
        settings.log_opts = dict(opt.partition("=")[::2] for opt in args.log_opts)
    from cais.network.errors import InvalidConfig
    from cais.network.ipam import default_bridge_config

    try:
        settings.bridge_ipam = default_bridge_config(settings.bip, settings.fixed_cidr,
                                                     settings.fixed_cidr_v6 if settings.ipv6 else "")
    except InvalidConfig as e:
        raise ConfigError(str(e)) from None
    try:
        namespace_defaults(settings.default_ipc_mode, settings.default_cgroupns_mode)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if settings.storage_driver == "overlay2":
        settings.storage_driver = "overlay"
    if not settings.hosts:
        settings.hosts = [DEFAULT_SOCKET]
    if settings.debug:
        settings.log_level = "debug"
    settings.pidfile = settings.pidfile or os.path.join(settings.exec_root, "caisd.pid")
    return settings, args
