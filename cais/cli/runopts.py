"""`run` and `create` flags → the body of POST /containers/create (Config + HostConfig)."""

from __future__ import annotations

import os
import shlex

from cais.cli import mountopts
from cais.cli.args import Parser, cpus, duration_ns, size
from cais.cli.main import CliError


def add_container_flags(p: Parser) -> None:
    a = p.add_argument
    a("-d", "--detach", action="store_true", help="run in the background and print the container ID")
    a("-i", "--interactive", action="store_true", help="keep STDIN open")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    a("--rm", action="store_true", help="remove the container when it exits")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-l", "--label", action="append", default=[])
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--tmpfs", action="append", default=[])
    a("--volumes-from", action="append", default=[])
    a("-p", "--publish", action="append", default=[])
    a("--network", "--net", default=None)
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    a("--network-alias", "--net-alias", action="append", default=[])
    a("--ip")
    a("--ip6")
    a("--mac-address")
    a("--dns", action="append", default=[])
    a("--dns-search", action="append", default=[])
    a("--dns-option", "--dns-opt", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("--domainname")
    a("-w", "--workdir")
    a("-u", "--user")
    a("--entrypoint")
    a("-h", "--hostname")
    a("-m", "--memory", type=size)
    a("--memory-swap", type=lambda v: -1 if v == "-1" else size(v))
    a("--memory-reservation", type=size)
    a("--cpus", type=cpus)
    a("-c", "--cpu-shares", type=int)
    a("--cpuset-cpus")
    a("--pids-limit", type=int)
    a("--ulimit", action="append", default=[])
    a("--read-only", action="store_true")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--privileged", action="store_true")
    a("--security-opt", action="append", default=[])
    a("--device", action="append", default=[])
    a("--device-cgroup-rule", action="append", default=[])
    a("--group-add", action="append", default=[])
    a("--userns", default="")
    a("--shm-size", type=size)
    a("--sysctl", action="append", default=[])
    a("--init", action="store_true")
    a("--restart", default="no")
    a("--health-cmd")
    a("--health-interval", type=duration_ns)
    a("--health-timeout", type=duration_ns)
    a("--health-retries", type=int)
    a("--health-start-period", type=duration_ns)
    a("--no-healthcheck", action="store_true")
    a("--log-driver")
    a("--log-opt", action="append", default=[])
    a("--stop-signal")
    a("--stop-timeout", type=int)
    a("--detach-keys")
    a("--oom-kill-disable", action="store_true")
    a("--platform")
    a("--pull", choices=["always", "missing", "never"], default="missing")
    a("-q", "--quiet", action="store_true")
    a("image")
    a("command", nargs="*")


def _kv_list(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"invalid argument \"{item}\" for \"{flag}\" flag", 125)
        out[key] = value
    return out


def _env(opts) -> list[str]:  # type: ignore[no-untyped-def]
    env = []
    for path in opts.env_file:
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        env.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
        except OSError as e:
            raise CliError(f"open {path}: {e.strerror.lower() if e.strerror else e}", 125) from None
    for item in opts.env:
        env.append(item if "=" in item else f"{item}={os.environ.get(item, '')}")
    return env


def _ulimits(items: list[str]) -> list[dict]:
    out = []
    for item in items:
        name, _, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            out.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        except ValueError:
            raise CliError(f"invalid argument \"{item}\" for \"--ulimit\" flag", 125) from None
    return out


def _devices(items: list[str]) -> list[dict]:
    out = []
    for item in items:
        parts = item.split(":")
        host = parts[0]
        inner = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
        perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
        out.append({"PathOnHost": host, "PathInContainer": inner, "CgroupPermissions": perms})
    return out


def _security_opts(items: list[str]) -> list[str]:
    """As docker's CLI: `seccomp=PATH` is sent as the profile's content (the daemon may not see PATH)."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if key == "seccomp" and sep and value not in ("unconfined", "builtin", ""):
            try:
                with open(value) as f:
                    item = f"seccomp={f.read()}"
            except OSError as e:
                raise CliError(f"opening seccomp profile ({value}) failed: {e.strerror}", 125) from None
        out.append(item)
    return out


def _restart(text: str) -> dict:
    name, _, count = text.partition(":")
    policy = {"Name": name, "MaximumRetryCount": 0}
    if count:
        if not count.isdigit():
            raise CliError(f"invalid restart policy format: maximum retry count must be an integer: {text}", 125)
        policy["MaximumRetryCount"] = int(count)
    return policy


def _ports(items: list[str], expose: list[str]) -> tuple[dict, dict]:
    if not items and not expose:
        return {}, {}  # cais.network.ports (dataclasses, ipaddress) costs ~10 ms of a run's start
    from cais.network.errors import InvalidConfig
    from cais.network.ports import parse_publish

    exposed: dict = {}
    bindings: dict[str, list] = {}
    try:
        for item in items:
            for key, hosts in parse_publish(item).items():
                exposed[key] = {}
                bindings.setdefault(key, []).extend(hosts)
        for item in expose:
            for key in parse_publish(item):
                exposed[key] = {}
    except InvalidConfig as e:
        raise CliError(str(e), 125) from None
    return exposed, bindings


def _networking(opts) -> dict | None:  # type: ignore[no-untyped-def]
    """NetworkingConfig for --network-alias and --ip: they apply to the --network given."""
    if not opts.network_alias and not opts.ip and not opts.ip6:
        return None
    if (opts.network or "default") in ("default", "bridge", "none", "host") or opts.network.startswith("container:"):
        raise CliError("--network-alias, --ip and --ip6 need a user-defined network (--network NAME)", 125)
    return {"EndpointsConfig": {opts.network: {"Aliases": opts.network_alias or None,
                                               "IPAMConfig": {"IPv4Address": opts.ip or "", "IPv6Address": opts.ip6 or ""}
                                               if opts.ip or opts.ip6 else None}}}


def container_body(opts) -> dict:  # type: ignore[no-untyped-def]
    healthcheck = None
    if opts.no_healthcheck:
        healthcheck = {"Test": ["NONE"]}
    elif opts.health_cmd or opts.health_interval or opts.health_timeout or opts.health_retries:
        healthcheck = {"Test": ["CMD-SHELL", opts.health_cmd] if opts.health_cmd else [],
                       "Interval": opts.health_interval or 0, "Timeout": opts.health_timeout or 0,
                       "Retries": opts.health_retries or 0, "StartPeriod": opts.health_start_period or 0}
    exposed, bindings = _ports(opts.publish, opts.expose)
    log_config = {"Type": opts.log_driver or "", "Config": _kv_list(opts.log_opt, "--log-opt")}
    binds, volumes = mountopts.binds(opts.volume)
    host = {
        "Binds": binds or None, "NetworkMode": opts.network or "default", "PortBindings": bindings,
        "RestartPolicy": _restart(opts.restart), "AutoRemove": opts.rm, "Mounts": [mountopts.mount(m) for m in opts.mount] or None,
        "Tmpfs": mountopts.tmpfs(opts.tmpfs) or None, "VolumesFrom": opts.volumes_from or None,
        "Memory": opts.memory or 0, "MemorySwap": opts.memory_swap or 0,
        "MemoryReservation": opts.memory_reservation or 0, "NanoCpus": opts.cpus or 0,
        "CpuShares": opts.cpu_shares or 0, "CpusetCpus": opts.cpuset_cpus or "", "PidsLimit": opts.pids_limit,
        "Ulimits": _ulimits(opts.ulimit) or None, "ReadonlyRootfs": opts.read_only,
        "CapAdd": opts.cap_add or None, "CapDrop": opts.cap_drop or None, "Privileged": opts.privileged,
        "SecurityOpt": _security_opts(opts.security_opt) or None, "Devices": _devices(opts.device) or None,
        "DeviceCgroupRules": opts.device_cgroup_rule or None, "GroupAdd": opts.group_add or None,
        "UsernsMode": opts.userns,
        "ShmSize": opts.shm_size or 0, "Sysctls": _kv_list(opts.sysctl, "--sysctl") or None,
        "Init": True if opts.init else None, "OomKillDisable": opts.oom_kill_disable,
        "LogConfig": log_config, "PublishAllPorts": opts.publish_all, "Dns": opts.dns or None,
        "DnsSearch": opts.dns_search or None, "DnsOptions": opts.dns_option or None,
        "ExtraHosts": opts.add_host or None,
    }
    body = {
        "Image": opts.image, "Cmd": opts.command or None, "Env": _env(opts),
        "Labels": _kv_list(opts.label, "--label"), "WorkingDir": opts.workdir or "", "User": opts.user or "",
        "Hostname": opts.hostname or "", "Tty": opts.tty, "OpenStdin": opts.interactive,
        "StdinOnce": opts.interactive and not opts.detach, "AttachStdin": opts.interactive and not opts.detach,
        "AttachStdout": not opts.detach, "AttachStderr": not opts.detach, "ExposedPorts": exposed or None,
        "Volumes": volumes or None, "StopSignal": opts.stop_signal, "StopTimeout": opts.stop_timeout, "Healthcheck": healthcheck,
        "HostConfig": host, "Domainname": opts.domainname or "", "MacAddress": opts.mac_address or "",
    }
    networking = _networking(opts)
    if networking:
        body["NetworkingConfig"] = networking
    if opts.entrypoint is not None:
        body["Entrypoint"] = shlex.split(opts.entrypoint) if opts.entrypoint else [""]
    return body
