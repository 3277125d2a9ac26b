"""`cais run -it` on a pseudo-terminal: a working shell, window size, Ctrl-P Ctrl-Q detach."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import termios
import time

from tests.caisd import VENV_BIN, Caisd


def _read_some(fd: int) -> bytes | None:
    """What the pty gives within half a second (b"" if nothing); None once it is closed."""
    ready, _, _ = select.select([fd], [], [], 0.5)
    if not ready:
        return b""
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return None
    return chunk or None


def _drive(argv: list[str], env: dict, steps: list[tuple[bytes, bytes]], timeout: float = 30) -> tuple[bytes, int]:
    """Run argv on a pty of 40x100; for each step send its input once `wait_for` was seen."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        os.execve(argv[0], argv, env)
    buf = b""
    try:
        deadline = time.monotonic() + timeout
        for wait_for, send in steps:
            while wait_for not in buf and time.monotonic() < deadline:
                if (chunk := _read_some(fd)) is None:
                    break
                buf += chunk
            assert wait_for in buf, buf
            os.write(fd, send)
        while time.monotonic() < deadline:
            if (chunk := _read_some(fd)) is None:
                break
            buf += chunk
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return buf, os.waitstatus_to_exitcode(status)
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        return buf, os.waitstatus_to_exitcode(status)
    finally:
        os.close(fd)


def test_cais_run_it_shell_size_and_detach(daemon: Caisd) -> None:
    env = {**os.environ, "CAIS_HOST": daemon.host, "TERM": "xterm"}
    argv = [os.path.join(VENV_BIN, "cais"), "run", "-it", "--name", "cais-en-tty", "busybox", "sh"]
    try:
        out, code = _drive(argv, env, [(b"#", b"stty size; echo $((2+3))x\n"), (b"5x", b"\x10\x11")])
        assert b"40 100" in out and b"5x" in out
        assert code == 0
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", "cais-en-tty").stdout == b"true\n"
        out, code = _drive([os.path.join(VENV_BIN, "cais"), "attach", "cais-en-tty"], env,
                           [(b"", b"\n"), (b"#", b"exit 4\n")])
        assert code == 4
    finally:
        daemon.docker("rm", "-f", "cais-en-tty", check=False)


def test_docker_exec_it(daemon: Caisd) -> None:
    cid = daemon.docker("run", "-d", "busybox", "sleep", "60").stdout.decode().strip()
    try:
        out, code = _drive([shutil.which("docker") or "docker", "-H", daemon.host, "exec", "-it", cid, "sh"], dict(os.environ),
                           [(b"#", b"sleep 0.3; tty; stty size; exit 3\n")])
        assert b"/dev/pts/" in out and b"40 100" in out
        assert code == 3
    finally:
        daemon.docker("rm", "-f", cid)
