"""The container process: user, groups, umask, env, cwd, executable lookup, and the final execve."""

from __future__ import annotations

import os
import stat

from cais.runtime.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def environment(process: dict[str, Any]) -> dict[str, str]:
    env = dict(e.split("=", 1) for e in process.get("env", []))
    env.setdefault("PATH", DEFAULT_PATH)
    if "HOME" not in env:
        env["HOME"] = _home(process.get("user", {}).get("uid", 0))
    return env


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) > 5 and fields[2] == str(uid):
                    return fields[5]
    except OSError:
        pass
    return "/"


def find_executable(name: str, env: dict[str, str]) -> str:
    """Go's exec.LookPath, as runc calls it once the user is switched (so a file the user may not
    reach is "permission denied"), with runc's messages, which docker turns into exit codes."""
    if "/" in name:
        error = _not_executable(name)
        if error is None:
            return name
        raise ConfigError(f"exec: {go_quote(name)}: {error}")
    for d in env["PATH"].split(":"):
        path = os.path.join(d or ".", name)
        if _not_executable(path) is None:
            return path
    raise ConfigError(f"exec: {go_quote(name)}: executable file not found in $PATH")


def _not_executable(path: str) -> str | None:
    """Why `path` cannot be executed, as Go words it (stat, then any x bit on a non-directory)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"stat {path}: {go_strerror(e.errno)}"
    if not stat.S_ISDIR(mode) and mode & 0o111:
        return None
    return "permission denied"


def go_strerror(errno: int | None) -> str:
    """An errno as Go's syscall.Errno prints it: the C message, lower-cased first letter."""
    message = os.strerror(errno or 0)
    return message[:1].lower() + message[1:]


def go_quote(s: str) -> str:
    """strconv.Quote for the names a command line holds."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def switch_user(user: dict[str, Any]) -> None:
    """setgroups/setgid/setuid to the configured user (capabilities kept by PR_SET_KEEPCAPS)."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    groups = user.get("additionalGids", [])
    try:
        os.setgroups(groups)
    except PermissionError:
        if set(groups) - {gid}:  # dockerd lists the primary group too: that one is there anyway
            raise ConfigError("setgroups is denied in this user namespace; additionalGids impossible") from None
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if "umask" in user:
        os.umask(user["umask"])


def chdir(cwd: str, *, denied_ok: bool = False) -> bool:
    """chdir to process.cwd and make sure it is inside the container root (CVE-2024-21626 class).

    denied_ok: EACCES returns False instead of failing (runc's first try, before the user switch).
    """
    try:
        os.chdir(cwd)
    except PermissionError as e:
        if denied_ok:
            return False
        raise ConfigError(f"process.cwd {cwd}: {e.strerror}") from None
    except OSError as e:
        raise ConfigError(f"process.cwd {cwd}: {e.strerror}") from None
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    if not here.startswith("/"):
        raise ConfigError(f"process.cwd {cwd} is outside the container root")
    return True


def set_oom_score_adj(value: int) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def execute(path: str, args: list[str], env: dict[str, str]) -> None:
    """Replace the init with the user's program; signals Python ignores go back to default."""
    import _signal  # signal.py's C half: signal.py builds enums, an import every init would pay

    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    try:
        os.execve(path, args, env)
    except OSError as e:  # e.g. a script whose interpreter is missing: runc's words
        raise ConfigError(f"exec {path}: {go_strerror(e.errno)}") from None

