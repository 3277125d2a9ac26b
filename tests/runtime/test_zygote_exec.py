"""exec through the warm init zygote (launch.Zygote): the process it clones, through a helper that
joins the container's namespaces, ends up exactly where a fresh bootstrap would put it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cais import runtime
from cais.runtime.launch import Zygote
from tests.runtime.bundle import Runtime, read

_PROBE = ("for n in user mnt pid net uts ipc; do readlink /proc/self/ns/$n; done; "
          "grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
          "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup; echo --; pwd; echo HOME=$HOME; ls /proc/self/fd; mkdir /tmp/d 2>/dev/null; echo mkdir=$?")


@pytest.fixture
def zygote() -> Zygote:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def _userns_container(rt: Runtime, zygote: Zygote) -> tuple[str, int]:
    b = rt.bundle("sleep", "100000")
    b.config["root"]["readonly"] = False
    b.config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        b.config["linux"][key] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["mounts"] = [m for m in b.config["mounts"] if m["type"] != "cgroup"]
    b.config["linux"]["cgroupsPath"] = f"/cais-rt-zygote-exec-{os.getpid()}"
    b.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    b.write()
    os.chmod(rt.top, 0o711)
    cid = rt.new_id()
    with open(os.devnull, "r+") as null:
        runtime.create(cid, b.path, root=rt.root, stdio=(null.fileno(),) * 3, bootstrap=zygote.bootstrap())
    runtime.start(cid, root=rt.root)
    return cid, runtime.state(cid, root=rt.root)["pid"]


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _exec_probe(rt: Runtime, cid: str, zygote: Zygote | None) -> list[str]:
    out_path = os.path.join(rt.top, "exec.out")
    process = {"args": ["sh", "-c", _PROBE], "cwd": "/tmp", "env": ["PATH=/bin", "HOME=/nowhere"],
               "user": {"uid": 1000, "gid": 1001, "additionalGids": [1002]}, "noNewPrivileges": True,
               "capabilities": {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}}
    with open(os.devnull) as null, open(out_path, "w") as out:
        stdio = (null.fileno(), out.fileno(), out.fileno())
        pid = runtime.exec_process(cid, process, root=rt.root, stdio=stdio,
                                   bootstrap=zygote.bootstrap(stdio) if zygote else None)
    _, status = os.waitpid(pid, 0)  # cloned by the zygote's helper, yet our child
    assert os.waitstatus_to_exitcode(status) == 0, read(out_path)
    return read(out_path).splitlines()


def test_exec_through_the_zygote_is_in_the_container(rt: Runtime, zygote: Zygote) -> None:
    cid, init = _userns_container(rt, zygote)
    try:
        lines = _exec_probe(rt, cid, zygote)
        assert lines == _exec_probe(rt, cid, None)  # exactly what a fresh bootstrap makes
        namespaces = [_ns(init, k) for k in ("user", "mnt", "pid", "net", "uts", "ipc")]
        assert lines[:6] == namespaces and namespaces[0] != _ns("self", "user")
        status_of = dict(line.split(":", 1) for line in lines[6:13])
        assert status_of["Uid"].split() == ["1000"] * 4 and status_of["Gid"].split() == ["1001"] * 4
        assert status_of["Groups"].split() == ["1002"]
        assert int(status_of["CapBnd"], 16) == (1 << 0) | (1 << 5)  # CAP_CHOWN, CAP_KILL
        assert status_of["NoNewPrivs"].strip() == "1" and status_of["Seccomp"].strip() == "2"
        mine, init_view, rest = "\n".join(lines[13:]).split("\n--\n")
        assert mine == init_view and mine  # the init's cgroups (seen from the container's cgroup namespace)
        rest = rest.splitlines()
        assert rest[0] == "/tmp" and rest[1] == "HOME=/nowhere"
        assert set(rest[2:-1]) == {"0", "1", "2", "3"}, rest  # 3: ls's own /proc/self/fd
        assert rest[-1] == "mkdir=1"  # the container's seccomp filter, loaded last
    finally:
        runtime.kill(cid, 9, root=rt.root)
        os.waitpid(init, 0)
        runtime.delete(cid, root=rt.root)


def test_exec_through_a_gone_zygote_fails_cleanly(rt: Runtime, zygote: Zygote) -> None:
    cid, init = _userns_container(rt, zygote)
    try:
        os.kill(zygote.pid, 9)
        os.waitpid(zygote.pid, 0)
        zygote.pid = 0
        with pytest.raises(runtime.RuntimeFailure, match="zygote is gone"):
            runtime.exec_process(cid, {"args": ["true"], "cwd": "/"}, root=rt.root, bootstrap=zygote.bootstrap())
    finally:
        runtime.kill(cid, 9, root=rt.root)
        os.waitpid(init, 0)
        runtime.delete(cid, root=rt.root)


def test_tty_exec_through_the_zygote(rt: Runtime, zygote: Zygote) -> None:
    """A terminal: the pty's master comes back over the console socket; the process's stdio is its slave."""
    cid, init = _userns_container(rt, zygote)
    sock_path = os.path.join(rt.top, "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    try:
        process = {"args": ["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys"], "cwd": "/",
                   "terminal": True}
        pid = runtime.exec_process(cid, process, root=rt.root, console_socket=sock_path, bootstrap=zygote.bootstrap())
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
        _, status = os.waitpid(pid, 0)
        output = b""
        while True:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:  # EIO: the slave's last holder is gone
                break
            if not chunk:
                break
            output += chunk
        os.close(fds[0])
        assert os.waitstatus_to_exitcode(status) == 0, output
        assert b"/dev/pts/" in output and b"both-ttys" in output, output
    finally:
        server.close()
        runtime.kill(cid, 9, root=rt.root)
        os.waitpid(init, 0)
        runtime.delete(cid, root=rt.root)


def test_the_command_line_exec_still_boots_fresh(rt: Runtime) -> None:
    """`cais-runtime exec` has no zygote: the fresh bootstrap stays (and the same probe passes)."""
    b = rt.bundle("sleep", "100000")
    cid = rt.create(b)
    assert rt("start", cid).returncode == 0
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cais-runtime"), "--root", rt.root,
                           "exec", cid, "sh", "-c", "ls /proc/self/fd"], capture_output=True, text=True)
    assert done.returncode == 0 and set(done.stdout.split()) == {"0", "1", "2", "3"}, done
