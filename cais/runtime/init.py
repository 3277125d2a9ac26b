"""The container's init, in the order the kernel needs it.

bootstrap.py runs in a fresh interpreter (see launch.py), makes itself non-dumpable, joins the
namespaces given by path and clone()s the init into the new ones. The init then:

  1. waits for the runtime to write its uid/gid maps and put it in its cgroup,
  2. becomes root of its user namespace, joins a fresh session keyring,
  3. mounts the rootfs and the config's mounts, makes /dev (rootfs.py),
  4. lets the runtime run the prestart/createRuntime hooks, runs createContainer itself,
  5. pivot_root, sysctls, masked and read-only paths, read-only root,
  6. hostname, terminal (console socket), rlimits,
  7. seccomp / user / capabilities / no_new_privs, chdir to cwd,
  8. reports `created`, blocks on the exec fifo until `start`,
  9. runs startContainer hooks and execs the user's program.

An exec'd process (`exec`) takes steps 1, 6, 7 and 9 inside the container's namespaces.
"""

from __future__ import annotations

import os
import sys

from cais.linux import fds, keyring, mount, personality, prctl, seccomp, uts
from cais.runtime import capabilities, process, rlimits, rootfs
from cais.runtime import namespaces as namespaces_
from cais.runtime.channel import Channel
from cais.runtime.errors import ConfigError, RuntimeFailure

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_step = ["starting"]  # what the init is doing, for error messages


def _at(step: str) -> None:
    _step[0] = step


def _fail(ch: Channel, e: BaseException) -> None:
    message = str(e) if isinstance(e, RuntimeFailure) else f"container init, {_step[0]}: {_describe(e)}"
    try:
        ch.send({"error": message})
    except OSError:
        print(f"cais-runtime init: {message}", file=sys.stderr)
    os._exit(1)


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    return f"{type(e).__name__}: {e}"


def run(ch: Channel, job: dict[str, Any]) -> None:
    """The init's whole life: never returns (execs the user's program, or exits on failure)."""
    try:
        if job["kind"] == "create":
            _create(ch, job)
        else:
            _exec(ch, job)
    except BaseException as e:  # noqa: BLE001 - the init must never unwind into the bootstrap's code
        _fail(ch, e)
    os._exit(1)


class _Warn:
    def __init__(self, ch: Channel) -> None:
        self.ch = ch

    def __call__(self, message: str) -> None:
        self.ch.send({"type": "warning", "msg": message})


def _create(ch: Channel, job: dict[str, Any]) -> None:
    config = job["config"]
    proc = config["process"]
    linux = config.get("linux", {})
    warn = _Warn(ch)
    go = ch.expect("go")
    _at("entering its namespaces")
    os.setsid()  # a session of its own, as runc's init: the caller's terminal signals reach the caller only
    if job["new_userns"]:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if job["new_cgroupns"]:
        namespaces_.unshare_cgroup()
    if not job["no_new_keyring"]:
        _new_keyring(job["id"], warn)
    if "oomScoreAdj" in proc:
        process.set_oom_score_adj(proc["oomScoreAdj"])
    fifo = job["fifo_fd"]
    program = _seccomp_program(job, warn)
    # while /proc is the host's (not in a mount namespace joined by path: whose /proc is another's)
    bounding = None if any(kind == "mount" for kind, _ in job["joins"]) else capabilities.bounding_set()

    all_hooks = config.get("hooks", {})
    if all_hooks.get("createContainer") or all_hooks.get("startContainer"):
        from cais.runtime import hooks  # before pivot_root: afterwards the host's files are gone
    if proc.get("terminal"):
        from cais.runtime import terminal
    root = rootfs.Rootfs(config, job["bundle"], job["new_cgroupns"], warn)
    _at("mounting the root filesystem")
    root.prepare()
    if job["runtime_hooks"]:  # prestart, createRuntime: the runtime runs them now, in its namespaces
        ch.send({"type": "hooks"})
        ch.expect("hooks-done")
    state = dict(job["state"], pid=go["pid"])
    if all_hooks.get("createContainer"):
        hooks.run("createContainer", all_hooks["createContainer"], state)
    _at("pivoting to the root filesystem")
    root.pivot(job["no_pivot"])
    _at("applying sysctls, masked and read-only paths")
    rootfs.write_sysctls(linux.get("sysctl", {}))
    rootfs.finish(config)
    _at("setting the hostname")
    _uts(config, job)
    if linux.get("personality"):
        _personality(linux["personality"])

    user = proc.get("user", {})
    if proc.get("terminal"):
        _at("setting up the terminal")
        console = terminal.setup(job["console_fd"], user.get("uid", 0), user.get("gid", 0))
        _bind_console(console)
    exe, env = _finalize(proc, program, warn, job["preserve_fds"], bounding)
    ch.send({"type": "created"})
    ch.close()

    writer = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)  # blocks until `start`
    os.write(writer, b"0")
    os.close(writer)
    os.close(fifo)
    try:
        if all_hooks.get("startContainer"):
            hooks.run("startContainer", all_hooks["startContainer"], dict(state, status="running"))
        process.execute(exe, proc["args"], env)
    except BaseException as e:  # noqa: BLE001 - nobody is listening any more: stderr is all we have
        print(e if isinstance(e, RuntimeFailure) else f"cais-runtime: {_describe(e)}", file=sys.stderr)
        os._exit(1)  # as runc's init


def _exec(ch: Channel, job: dict[str, Any]) -> None:
    proc = job["process"]
    warn = _Warn(ch)
    ch.expect("go")
    os.setsid()
    program = _seccomp_program(job, warn)
    if "oomScoreAdj" in proc:
        process.set_oom_score_adj(proc["oomScoreAdj"])
    if proc.get("terminal"):
        from cais.runtime import terminal  # P1 imported it before joining the mount namespace

        _at("setting up the terminal")
        user = proc.get("user", {})
        terminal.setup(job["console_fd"], user.get("uid", 0), user.get("gid", 0))
    exe, env = _finalize(proc, program, warn, job["preserve_fds"])
    process.execute(exe, proc["args"], env)  # success closes the channel (O_CLOEXEC)


def _seccomp_program(job: dict[str, Any], warn: _Warn) -> tuple[bytes, int, list[str]] | None:
    """The seccomp program compiled before the clone (bootstrap._preload); its warnings, now."""
    program = job.get("seccomp_program")
    for message in program[2] if program else ():
        warn(message)
    return program


def _finalize(proc: dict[str, Any], program: tuple[bytes, int, list[str]] | None, warn: _Warn,
              preserve_fds: int, bounding: int | None = None) -> tuple[str, dict[str, str]]:
    """Steps shared by init and exec: rlimits, seccomp, user, capabilities, cwd, executable, fds.
    `bounding`: the bounding set, read before pivot_root (an exec reads it capability by capability:
    the /proc it sees is the container's)."""
    _at("setting rlimits")
    rlimits.apply(proc.get("rlimits", []), warn)
    env = process.environment(proc)
    caps = proc.get("capabilities", {})
    nnp = bool(proc.get("noNewPrivileges"))
    # As runc: enter the cwd while still root (a directory only root may enter, -w /root with
    # --user 65534 --cap-drop ALL), and again after the switch if root was denied (root-squashed
    # or user-owned directories the container user may enter).
    _at("entering process.cwd")
    entered = process.chdir(proc.get("cwd", "/"), denied_ok=True)
    _at("dropping privileges")
    if program is not None and not nnp:
        seccomp.set_mode_filter(*program[:2])  # needs CAP_SYS_ADMIN without no_new_privs: load while still root
    prctl.set_keepcaps(True)
    grantable = capabilities.drop_bounding(caps, warn, bounding)
    process.switch_user(proc.get("user", {}))
    prctl.set_keepcaps(False)
    capabilities.apply(caps, grantable, warn)
    if nnp:
        prctl.set_no_new_privs()
    if program is not None and nnp:
        seccomp.set_mode_filter(*program[:2])
    if not entered:
        _at("entering process.cwd")
        process.chdir(proc.get("cwd", "/"))
    exe = process.find_executable(proc["args"][0], env)  # as runc: as the user, in its cwd
    fds.cloexec_from(3 + preserve_fds)
    return exe, env


def _uts(config: dict[str, Any], job: dict[str, Any]) -> None:
    for key, setter in (("hostname", uts.sethostname), ("domainname", uts.setdomainname)):
        if config.get(key):
            if not job["new_uts"]:
                raise ConfigError(f"cannot set {key} without a private UTS namespace")
            setter(config[key])


def _personality(config: dict[str, Any]) -> None:
    domains = {"LINUX": personality.PER_LINUX, "LINUX32": personality.PER_LINUX32}
    if config.get("domain") not in domains:
        raise ConfigError(f"linux.personality: unknown domain {config.get('domain')!r}")
    personality.personality(domains[config["domain"]])


def _new_keyring(container_id: str, warn: _Warn) -> None:
    try:
        keyring.join_session_keyring(f"_ses.{container_id}")
    except OSError as e:
        warn(f"no session keyring of its own: {e.strerror}")


def _bind_console(slave: str) -> None:
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = rootfs.open_in_root(root, "/dev/console", "file")
        try:
            mount.mount(slave, rootfs.fdpath(fd), None, mount.MS_BIND)
        finally:
            os.close(fd)
    finally:
        os.close(root)
