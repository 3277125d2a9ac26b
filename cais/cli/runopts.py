"""`run` and `create` flags → the body of POST /containers/create (Config + HostConfig)."""

from __future__ import annotations

import os

from cais.cli.args import Parser, cpus, duration_ns, size, sysctl_arg
from cais.cli.main import CliError


def add_container_flags(p: Parser) -> None:
    a = p.add_argument
    a("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("--rm", action="store_true", help="Automatically remove the container and its associated anonymous "
      "volumes when it exits")
    a("--name", help="Assign a name to the container")
    a("-e", "--env", action="append", default=[], help="Set environment variables")
    a("--env-file", action="append", default=[], help="Read in a file of environment variables")
    a("-l", "--label", action="append", default=[], help="Set meta data on a container")
    a("-v", "--volume", action="append", default=[], help="Bind mount a volume")
    a("--mount", action="append", default=[], metavar="mount", help="Attach a filesystem mount to the container")
    a("--tmpfs", action="append", default=[], help="Mount a tmpfs directory")
    a("--volumes-from", action="append", default=[], help="Mount volumes from the specified container(s)")
    a("-p", "--publish", action="append", default=[], help="Publish a container's port(s) to the host")
    a("--network", "--net", default=None, metavar="network", help="Connect a container to a network")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    a("--expose", action="append", default=[], help="Expose a port or a range of ports")
    a("--network-alias", "--net-alias", action="append", default=[], help="Add network-scoped alias for the "
      "container")
    a("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    a("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    a("--dns", action="append", default=[], help="Set custom DNS servers")
    a("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    a("--dns-option", "--dns-opt", action="append", default=[], help="Set DNS options")
    a("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip)")
    a("--link", action="append", default=[], help="Add link to another container")
    a("--domainname", help="Container NIS domain name")
    a("-w", "--workdir", help="Working directory inside the container")
    a("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("-h", "--hostname", help="Container host name")
    a("-m", "--memory", type=size, help="Memory limit")
    a("--memory-swap", type=_swap, metavar="bytes", help="Swap limit equal to memory plus swap: '-1' to "
      "enable unlimited swap")
    a("--memory-reservation", type=size, help="Memory soft limit")
    a("--cpus", type=cpus, help="Number of CPUs")
    a("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    a("--ulimit", action="append", default=[], metavar="ulimit", help="Ulimit options")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    a("--cap-add", action="append", default=[], help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("--security-opt", action="append", default=[], help="Security Options")
    a("--device", action="append", default=[], help="Add a host device to the container")
    a("--device-cgroup-rule", action="append", default=[], help="Add a rule to the cgroup allowed devices list")
    a("--group-add", action="append", default=[], help="Add additional groups to join")
    a("--userns", default="", help="User namespace to use")
    a("--pid", default="", help="PID namespace to use")
    a("--ipc", default="", help="IPC mode to use")
    a("--uts", default="", help="UTS namespace to use")
    a("--cgroupns", default="", help="Cgroup namespace to use (host|private)")
    a("--shm-size", type=size, help="Size of /dev/shm")
    a("--sysctl", action="append", default=[], metavar="map", type=sysctl_arg, help="Sysctl options")
    a("--init", action="store_true", help="Run an init inside the container that forwards signals and reaps "
      "processes")
    a("--restart", default="no", help="Restart policy to apply when a container exits (default \"no\")")
    a("--health-cmd", help="Command to run to check health")
    a("--health-interval", type=duration_ns, help="Time between running the check (ms|s|m|h) (default 0s)")
    a("--health-timeout", type=duration_ns, help="Maximum time to allow one check to run (ms|s|m|h) "
      "(default 0s)")
    a("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    a("--health-start-period", type=duration_ns, help="Start period for the container to initialize before "
      "starting health-retries countdown (ms|s|m|h) (default 0s)")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    a("--log-driver", help="Logging driver for the container")
    a("--log-opt", action="append", default=[], help="Log driver options")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    a("--detach-keys", help="Override the key sequence for detaching a container")
    a("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--pull", choices=["always", "missing", "never"], default="missing", help="Pull image before running "
      "(\"always\", \"missing\", \"never\") (default \"missing\")")
    a("-q", "--quiet", action="store_true", help="Suppress the pull output")
    a("image")
    a("command", nargs="*")


def _swap(text: str) -> int:
    return -1 if text == "-1" else size(text)


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


def _mounts(opts) -> tuple[list[str], dict, list[dict], dict[str, str]]:  # type: ignore[no-untyped-def]
    """-v, --mount and --tmpfs → Binds, Volumes, Mounts and Tmpfs (mountopts only when given)."""
    if not (opts.volume or opts.mount or opts.tmpfs):
        return [], {}, [], {}
    from cais.cli import mountopts
    binds, volumes = mountopts.binds(opts.volume)
    return binds, volumes, [mountopts.mount(m) for m in opts.mount], mountopts.tmpfs(opts.tmpfs)


def _networking(opts) -> dict | None:  # type: ignore[no-untyped-def]
    """NetworkingConfig for --network-alias, --ip and --link: they apply to the --network given
    (links on the default bridge are HostConfig's alone, as docker's CLI sends them)."""
    builtin = (opts.network or "default") in ("default", "bridge", "none", "host") or opts.network.startswith("container:")
    if not (opts.network_alias or opts.ip or opts.ip6 or (opts.link and not builtin)):
        return None
    if builtin:
        raise CliError("--network-alias, --ip and --ip6 need a user-defined network (--network NAME)", 125)
    return {"EndpointsConfig": {opts.network: {"Aliases": opts.network_alias or None, "Links": opts.link or None,
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
    binds, volumes, mounts, tmpfs = _mounts(opts)
    host = {
        "Binds": binds or None, "NetworkMode": opts.network or "default", "PortBindings": bindings,
        "RestartPolicy": _restart(opts.restart), "AutoRemove": opts.rm, "Mounts": mounts or None,
        "Tmpfs": tmpfs or None, "VolumesFrom": opts.volumes_from or None,
        "Memory": opts.memory or 0, "MemorySwap": opts.memory_swap or 0,
        "MemoryReservation": opts.memory_reservation or 0, "NanoCpus": opts.cpus or 0,
        "CpuShares": opts.cpu_shares or 0, "CpusetCpus": opts.cpuset_cpus or "", "PidsLimit": opts.pids_limit,
        "Ulimits": _ulimits(opts.ulimit) or None, "ReadonlyRootfs": opts.read_only,
        "CapAdd": opts.cap_add or None, "CapDrop": opts.cap_drop or None, "Privileged": opts.privileged,
        "SecurityOpt": _security_opts(opts.security_opt) or None, "Devices": _devices(opts.device) or None,
        "DeviceCgroupRules": opts.device_cgroup_rule or None, "GroupAdd": opts.group_add or None,
        "UsernsMode": opts.userns, "PidMode": opts.pid, "IpcMode": opts.ipc, "UTSMode": opts.uts,
        "CgroupnsMode": opts.cgroupns,
        "ShmSize": opts.shm_size or 0, "Sysctls": _kv_list(opts.sysctl, "--sysctl") or None,
        "Init": True if opts.init else None, "OomKillDisable": opts.oom_kill_disable,
        "LogConfig": log_config, "PublishAllPorts": opts.publish_all, "Dns": opts.dns or None,
        "DnsSearch": opts.dns_search or None, "DnsOptions": opts.dns_option or None,
        "ExtraHosts": opts.add_host or None, "Links": opts.link or None,
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
        import shlex
        body["Entrypoint"] = shlex.split(opts.entrypoint) if opts.entrypoint else [""]
    return body
