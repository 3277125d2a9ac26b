"""Seccomp, user namespaces, joining namespaces, exec, console socket, hooks, bad configs."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from cais.runtime.terminal import receive
from tests.runtime.bundle import Runtime, read
from tests.wait import wait_for


def _wait_status(rt: Runtime, cid: str, status: str) -> None:
    wait_for(lambda: rt.state(cid)["status"] == status, f"status {status}")


def test_seccomp_filter_denies_syscall(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d && echo MADE; echo after")
    b.config["root"]["readonly"] = False
    b.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ],
    }
    for nnp in (True, False):
        b.config["process"]["noNewPrivileges"] = nnp
        done = rt.run(b)
        assert done.returncode == 0, done.stderr
        assert "Seccomp:\t2" in done.stdout
        assert "MADE" not in done.stdout and "after" in done.stdout
        assert "Operation not permitted" in done.stderr


def test_user_namespace_mappings(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; sleep 100000")
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["mounts"] = [m for m in b.config["mounts"] if m["type"] != "cgroup"]
    os.chmod(rt.top, 0o711)  # the container's root (an unprivileged host uid) must reach its rootfs
    cid = rt.create(b)
    pid = rt.state(cid)["pid"]
    assert rt("start", cid).returncode == 0
    deadline = time.monotonic() + 30
    while len(read(rt.out).split()) < 7:
        assert time.monotonic() < deadline, read(rt.out)
        time.sleep(0.05)
    out = read(rt.out).split()
    assert out[:3] == ["0", "231072", "65536"] and out[6] == "0"
    status = read(f"/proc/{pid}/status")  # seen from the host: an unprivileged uid
    assert "Uid:\t231072\t231072\t231072\t231072" in status


def test_join_namespaces_by_path(rt: Runtime) -> None:
    first = rt.bundle("sleep", "100000")
    first.config["hostname"] = "cais-rt-shared"
    a = rt.create(first)
    pid = rt.state(a)["pid"]
    second = rt.bundle("sh", "-c", "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc")
    del second.config["hostname"]
    for ns in second.config["linux"]["namespaces"]:
        if ns["type"] in ("uts", "network", "ipc"):
            ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"
    done = rt.run(second)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "cais-rt-shared"
    assert lines[1] == os.readlink(f"/proc/{pid}/ns/net") and lines[2] == os.readlink(f"/proc/{pid}/ns/ipc")


def test_exec_into_running_container(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("sleep", "100000"))
    assert rt("start", cid).returncode == 0
    done = rt("exec", "--env", "X=42", "--cwd", "/tmp", cid, "sh", "-c", "echo $$ $X $(pwd); exit 7")
    assert done.returncode == 7, done.stderr
    pid, x, cwd = done.stdout.split()
    assert int(pid) > 1 and x == "42" and cwd == "/tmp"
    process = {
        "args": ["sh", "-c", "sleep 0.2; grep -E '^(Uid|CapEff)' /proc/self/status"],
        "cwd": "/",
        "user": {"uid": 42, "gid": 42},
        "env": ["PATH=/bin"],
    }
    path = os.path.join(rt.top, "process.json")
    with open(path, "w") as f:
        json.dump(process, f)
    pid_file = os.path.join(rt.top, "exec.pid")
    done = rt("exec", "--process", path, "--pid-file", pid_file, cid)
    assert done.returncode == 0, done.stderr
    assert "Uid:\t42" in done.stdout and "CapEff:\t0000000000000000" in done.stdout
    assert int(read(pid_file)) > 0
    bad = rt("exec", cid, "no-such-program")
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_terminal_through_console_socket(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "tty; read line; echo got:$line")
    b.config["process"]["terminal"] = True
    path = os.path.join(rt.top, "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        cid = rt.create(b, "--console-socket", path)
        conn, _ = server.accept()
        master = receive(conn)
        conn.close()
        assert rt("start", cid).returncode == 0
        os.write(master, b"cais\n")
        output = b""
        deadline = time.monotonic() + 10
        while b"got:cais" not in output and time.monotonic() < deadline:
            try:
                output += os.read(master, 1024)
            except OSError:
                break
        os.close(master)
    finally:
        server.close()
    assert b"/dev/pts/0" in output and b"got:cais" in output


def test_all_hooks_with_state(rt: Runtime) -> None:
    log = os.path.join(rt.top, "hooks.log")
    b = rt.bundle("true")
    b.config["mounts"].append(
        {"destination": "/hostlog", "type": "bind", "source": rt.top, "options": ["rbind"]}
    )
    hook = os.path.join(rt.top, "hook.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\nread state\necho "$1 $state" >> "$LOG"\n')
    os.chmod(hook, 0o755)
    in_container = os.path.join(rt.top, "rootfs-hook.sh")  # startContainer runs inside the container
    with open(in_container, "w") as f:
        f.write('#!/bin/sh\nread state\necho "startContainer $state" >> /hostlog/hooks.log\n')
    os.chmod(in_container, 0o755)
    b.config["hooks"] = {
        name: [{"path": hook, "args": [hook, name], "env": [f"LOG={log}"]}]
        for name in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    }
    b.config["hooks"]["createContainer"][0]["env"] = [f"LOG={log}"]
    b.config["hooks"]["startContainer"] = [{"path": "/hostlog/rootfs-hook.sh"}]
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    lines = read(log).splitlines()
    names = [line.split(" ", 1)[0] for line in lines]
    # startContainer (in the init, after the fifo) and poststart (in `start`) race, as with runc
    assert names[:3] == ["prestart", "createRuntime", "createContainer"] and names[-1] == "poststop"
    assert sorted(names[3:5]) == ["poststart", "startContainer"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert all(s["id"] == states[0]["id"] and s["bundle"] == b.path for s in states)
    assert states[0]["pid"] > 0 and states[-1]["status"] == "stopped"


def test_failing_hook_fails_create_cleanly(rt: Runtime) -> None:
    b = rt.bundle("true")
    b.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    b.write()
    done = rt("create", "-b", b.path, "cais-rt-hookfail")
    assert done.returncode == 1 and "createRuntime hook /bin/false exited with status 1" in done.stderr
    assert rt("state", "cais-rt-hookfail").returncode == 1


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c.pop("root"), "root.path missing"),
        (lambda c: c["process"].update(args=[]), "process.args"),
        (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace"),
        (lambda c: c["process"].update(args=["/no/such/binary"]), "stat /no/such/binary: no such file or directory"),
        (lambda c: c["mounts"].append({"destination": "relative"}), "not absolute"),
        (
            lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
            "unknown rlimit",
        ),
    ],
)
def test_bad_config_clear_error(rt: Runtime, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    b = rt.bundle("true")
    mutate(b.config)
    done = rt.run(b)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert rt("list", "-q").stdout == ""


def test_malformed_json_and_json_log(rt: Runtime) -> None:
    b = rt.bundle("true")
    b.write()
    with open(os.path.join(b.path, "config.json"), "w") as f:
        f.write("{not json")
    log = os.path.join(rt.top, "log.json")
    done = rt("--log", log, "--log-format", "json", "create", "-b", b.path, "cais-rt-bad")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    entry = json.loads(read(log).strip())
    assert entry["level"] == "error" and "config.json" in entry["msg"]
    assert rt("--bogus-flag").returncode == 1
    assert rt("kill", "nope", "KILL").stderr.strip() == "cais-runtime: container nope does not exist"


def test_foreground_run_and_exec_proxy_the_terminal(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "tty; read line; echo got:$line; exit 3")
    b.config["process"]["terminal"] = True
    done = rt.run_input(b, b"cais\n")
    assert done.returncode == 3, done.stderr
    assert "/dev/pts/0" in done.stdout and "got:cais" in done.stdout
    cid = rt.create(rt.bundle("sleep", "100000"))
    assert rt("start", cid).returncode == 0
    done = rt("exec", "-t", cid, "sh", "-c", "tty; exit 4")
    assert done.returncode == 4 and "/dev/pts/" in done.stdout


def test_exec_into_user_namespace_container(rt: Runtime) -> None:
    b = rt.bundle("sleep", "100000")
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["mounts"] = [m for m in b.config["mounts"] if m["type"] != "cgroup"]
    os.chmod(rt.top, 0o711)
    cid = rt.create(b)
    assert rt("start", cid).returncode == 0
    done = rt("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$")
    assert done.returncode == 0, done.stderr
    uid, inside, host, size, pid = done.stdout.split()
    assert (uid, inside, host, size) == ("0", "0", "231072", "65536") and int(pid) > 1


def test_device_cgroup_denies_block_devices(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "mknod /tmp/cais-blk b 8 0 && head -c 1 /tmp/cais-blk; echo rc=$?")
    b.config["root"]["readonly"] = False
    caps = b.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = [*caps[kind], "CAP_MKNOD"]
    done = rt.run(b)
    assert "rc=1" in done.stdout and "Operation not permitted" in done.stderr


@pytest.mark.parametrize("mutate", [
    lambda c: c["process"].update(user={"uid": "root"}),
    lambda c: c["mounts"].append({"destination": "/x", "type": "tmpfs", "options": [1, 2]}),
    lambda c: c["linux"].update(namespaces="pid"),
    lambda c: c["linux"].update(uidMappings=[{"containerID": 0}]),
    lambda c: c["process"].update(capabilities={"bounding": "CAP_KILL"}),
    lambda c: c["linux"].update(resources={"memory": {"limit": "lots"}}),
    lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_BOGUS"}),
    lambda c: c["process"].update(env=["NOEQUALS"]),
    lambda c: c.update(hooks={"prestart": [{"path": "relative"}]}),
])
def test_garbage_config_fields_never_traceback(rt: Runtime, mutate) -> None:  # type: ignore[no-untyped-def]
    b = rt.bundle("true")
    mutate(b.config)
    done = rt.run(b)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert rt("list", "-q").stdout == ""


def test_host_hostname_and_clock_are_untouchable(rt: Runtime) -> None:
    before = os.uname().nodename
    b = rt.bundle("sh", "-c", "hostname cais-rt-evil; hostname; date -s 2001-01-01 >/dev/null")
    caps = b.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = [*caps[kind], "CAP_SYS_ADMIN"]  # may rename its own UTS namespace, nothing more
    done = rt.run(b)
    assert done.stdout.split() == ["cais-rt-evil"], done.stderr
    assert "can't set date: Operation not permitted" in done.stderr
    assert os.uname().nodename == before
    assert time.time() > 1_700_000_000
