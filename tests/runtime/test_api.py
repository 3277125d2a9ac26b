"""The in-process API the engine uses: names, signatures, children it can wait for, one error class."""

from __future__ import annotations

import os
import signal

import pytest

from cais import runtime
from cais.runtime.errors import RuntimeFailure
from tests.runtime.bundle import Runtime, read
from tests.wait import wait_for


def test_in_process_lifecycle_exec_pause_and_errors(rt: Runtime) -> None:
    b = rt.bundle("sleep", "100000")
    b.write()
    cid = rt.new_id()
    out_path = os.path.join(rt.top, "exec.out")
    with open(os.devnull, "r+") as null, open(out_path, "w") as out:
        runtime.create(cid, b.path, root=rt.root, stdio=(null.fileno(), null.fileno(), null.fileno()))
        assert runtime.state(cid, root=rt.root)["status"] == "created"
        runtime.start(cid, root=rt.root)
        init = runtime.state(cid, root=rt.root)["pid"]
        pid = runtime.exec_process(cid, {"args": ["sh", "-c", "echo from-exec; exit 9"], "cwd": "/"},
                                   root=rt.root, stdio=(null.fileno(), out.fileno(), out.fileno()))
        _, status = os.waitpid(pid, 0)  # exec'd processes are the caller's children too
    assert os.waitstatus_to_exitcode(status) == 9 and read(out_path) == "from-exec\n"
    assert init in runtime.ps(cid, root=rt.root)
    runtime.pause(cid, root=rt.root)
    assert [c["status"] for c in runtime.list_containers(rt.root)] == ["paused"]
    runtime.resume(cid, root=rt.root)
    runtime.update(cid, {"pids": {"limit": 50}}, root=rt.root)
    with pytest.raises(RuntimeFailure, match="not stopped"):
        runtime.delete(cid, root=rt.root)
    runtime.kill(cid, signal.SIGKILL, root=rt.root)
    _, status = os.waitpid(init, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    runtime.delete(cid, root=rt.root)
    with pytest.raises(runtime.ContainerNotFound):
        runtime.state(cid, root=rt.root)
    assert callable(runtime.create) and runtime.DEFAULT_ROOT == "/run/cais-runtime"


def test_zygote_creates_children_of_the_caller(rt: Runtime) -> None:
    from cais.runtime.launch import Zygote

    zygote = Zygote()
    try:
        out_path = os.path.join(rt.top, "zygote.out")
        for _ in range(2):
            b = rt.bundle("sh", "-c", "echo pid=$$; ls /proc/$$/fd; true")
            b.write()
            cid = rt.new_id()
            with open(os.devnull) as null, open(out_path, "w") as out:
                runtime.create(cid, b.path, root=rt.root,
                               bootstrap=zygote.bootstrap((null.fileno(), out.fileno(), out.fileno())))
            pid = runtime.state(cid, root=rt.root)["pid"]
            runtime.start(cid, root=rt.root)
            _, status = os.waitpid(pid, 0)  # cloned by the zygote, yet our child
            assert os.waitstatus_to_exitcode(status) == 0
            words = read(out_path).split()
            assert words[0] == "pid=1" and set(words[1:]) == {"0", "1", "2"}, words
            runtime.delete(cid, root=rt.root)
        # joining a namespace by path: a helper cloned from the zygote joins it
        b = rt.bundle("hostname")
        b.config["linux"]["namespaces"] = [n if n["type"] != "uts" else
                                           {"type": "uts", "path": f"/proc/{os.getpid()}/ns/uts"}
                                           for n in b.config["linux"]["namespaces"]]
        del b.config["hostname"]
        b.write()
        cid = rt.new_id()
        with open(os.devnull) as null, open(out_path, "w") as out:
            runtime.create(cid, b.path, root=rt.root, bootstrap=zygote.bootstrap((null.fileno(), out.fileno(), 2)))
        pid = runtime.state(cid, root=rt.root)["pid"]
        runtime.start(cid, root=rt.root)
        os.waitpid(pid, 0)
        assert read(out_path).strip() == os.uname().nodename
        runtime.delete(cid, root=rt.root)
    finally:
        zygote.close()


def test_the_zygote_hands_a_create_to_its_spare_init_which_sees_mounts_made_since(rt: Runtime) -> None:
    """After a create (and a pause) the zygote clones a spare init; the next create is handed to it, whose mount
    namespace is copied then: a mount made after the spare was cloned (under a private mount: no
    propagation helps) is in the container. close() reaps the spare too."""
    from cais.linux import mount as m
    from cais.runtime.launch import Zygote

    private = os.path.join(rt.top, "cais-rt-spare")
    source = os.path.join(private, "src")
    os.makedirs(source)
    m.mount(private, private, None, m.MS_BIND)
    m.mount(None, private, None, m.MS_PRIVATE)
    zygote = Zygote()
    try:
        out_path = os.path.join(rt.top, "spare.out")
        spare = 0
        for first in (True, False):
            b = rt.bundle("sh", "-c", "ls /proc/$$/fd; cat /mnt/probe 2>&1; true")
            b.config["mounts"].append({"destination": "/mnt", "type": "bind", "source": source, "options": ["rbind"]})
            b.write()
            if not first:  # cloned once the zygote has been idle for a while
                wait_for(lambda: zygote.spare(), "a spare init", interval=0.1)  # each request delays it
                spare = zygote.spare()
                m.mount("tmpfs", source, "tmpfs", 0, "size=64k")  # after the spare was cloned
                with open(os.path.join(source, "probe"), "w") as f:
                    f.write("mounted-since\n")
            cid = rt.new_id()
            with open(os.devnull) as null, open(out_path, "w") as out:
                pid = runtime.create(cid, b.path, root=rt.root,
                                     bootstrap=zygote.bootstrap((null.fileno(), out.fileno(), out.fileno())))
            runtime.start(cid, root=rt.root)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, read(out_path)
            runtime.delete(cid, root=rt.root)
        assert pid == spare
        words = read(out_path).split()
        assert words[-1] == "mounted-since" and set(words[:-1]) == {"0", "1", "2"}, words  # nothing of the zygote's
        wait_for(lambda: zygote.spare(), "the next spare init", interval=0.1)
        spare = zygote.spare()
        assert spare != pid
    finally:
        zygote.close()
        m.umount(private, m.MNT_DETACH)
    with pytest.raises(ChildProcessError):
        os.waitpid(spare, os.WNOHANG)  # reaped by close()


def test_unprivileged_user_without_capabilities(rt: Runtime) -> None:
    """--user 65534 --cap-drop ALL: the init still reaches the exec fifo after setuid, and a cwd
    only root may enter (/root, 0700) is entered before the switch (as runc)."""
    for nnp in (False, True):
        b = rt.bundle("sh", "-c", "id; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; pwd")
        os.chmod(os.path.join(b.rootfs, "root"), 0o700)
        b.config["process"]["cwd"] = "/root"
        b.config["process"]["user"] = {"uid": 65534, "gid": 65534}
        b.config["process"]["capabilities"] = {k: [] for k in b.config["process"]["capabilities"]}
        b.config["process"]["noNewPrivileges"] = nnp
        b.write()
        cid = rt.new_id()
        out_path = os.path.join(rt.top, f"{cid}.out")
        with open(os.devnull) as null, open(out_path, "w") as out:
            runtime.create(cid, b.path, root=rt.root, stdio=(null.fileno(), out.fileno(), out.fileno()))
            init = runtime.state(cid, root=rt.root)["pid"]
            runtime.start(cid, root=rt.root)
            _, status = os.waitpid(init, 0)
        runtime.delete(cid, root=rt.root)
        assert os.waitstatus_to_exitcode(status) == 0, read(out_path)
        assert read(out_path).splitlines() == ["uid=65534(nobody) gid=65534(nogroup)",
                                               "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
                                               "CapBnd:\t0000000000000000", "/root"]
