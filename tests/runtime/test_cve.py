"""The three runc CVE classes, attacked for real (see docs/security.md)."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import pytest

from cais import runtime
from tests.runtime.bundle import Runtime, read

# CVE-2019-5736 class: the host binary that runs the runtime must stay out of reach.


def test_init_exe_is_a_protected_view_not_the_host_python(rt: Runtime) -> None:
    cid = rt.create(rt.bundle("true"))
    pid = rt.state(cid)["pid"]
    host_python = os.path.realpath(sys.executable)
    # a sealed memfd copy (a small launcher), or the binary through a detached read-only overlay
    assert os.readlink(f"/proc/{pid}/exe") in ("/memfd:cais-runtime-python (deleted)",
                                                "/" + os.path.basename(host_python))
    assert os.stat(f"/proc/{pid}/exe").st_dev != os.stat(host_python).st_dev
    with pytest.raises(OSError) as refused, open(f"/proc/{pid}/exe", "r+b") as f:
        f.write(b"\x7fELF overwritten")  # memfd: F_SEAL_WRITE (or ETXTBSY while it runs); overlay: EROFS
    assert refused.value.errno in (errno.EPERM, errno.ETXTBSY, errno.EROFS)
    # From inside the container, the init (still Python, waiting for start) is non-dumpable:
    # its /proc entries are out of reach even for the container's root.
    done = rt(
        "exec", cid, "sh", "-c", "readlink /proc/1/exe; cat /proc/1/environ; echo >> /proc/1/exe; echo end"
    )
    assert "memfd" not in done.stdout and "python" not in done.stdout
    assert done.stdout.strip() == "end" and done.stderr.count("Permission denied") >= 2


def test_the_overlay_view_of_a_binary_cannot_be_written() -> None:
    """launch's protected view of a large (static) interpreter: what a container reaching the
    init's /proc/PID/exe would get. Exercised directly: this venv's launcher is small (copied)."""
    from cais.runtime import launch

    host_python = os.path.realpath(sys.executable)
    fd = launch._through_overlay(host_python)
    if fd is None:
        pytest.skip("no private OverlayFS mount here (the runtime copies into a sealed memfd)")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "/" + os.path.basename(host_python)  # attached nowhere
        code = "import os; open('/proc/self/exe', 'r+b')"
        done = subprocess.run([f"/proc/self/fd/{fd}", "-I", "-S", "-c", code], pass_fds=(fd,),
                              capture_output=True, text=True)
        assert "Read-only file system" in done.stderr  # it runs, and its own exe is read-only
        with pytest.raises(OSError) as refused:
            os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        assert refused.value.errno == errno.EROFS
    finally:
        os.close(fd)


def test_init_through_the_overlay_view(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container whose init runs from the overlay view (as with a static, large interpreter)."""
    from cais.runtime import launch

    monkeypatch.setattr(launch, "_COPY_AT_MOST", 0)
    monkeypatch.setattr(launch, "_protected_python", None)
    b = rt.bundle("true")
    b.write()
    cid = rt.new_id()
    with open(os.devnull) as devnull:
        runtime.create(cid, b.path, root=rt.root, stdio=(devnull.fileno(),) * 3)
    try:
        if launch._protected_python is not None and os.readlink(f"/proc/self/fd/{launch._protected_python}") \
                .startswith("/memfd:"):
            pytest.skip("no private OverlayFS mount here (the runtime copies into a sealed memfd)")
        pid = runtime.state(cid, root=rt.root)["pid"]
        assert os.readlink(f"/proc/{pid}/exe") == "/" + os.path.basename(os.path.realpath(sys.executable))
        with pytest.raises(OSError) as refused:
            os.open(f"/proc/{pid}/exe", os.O_WRONLY)
        assert refused.value.errno == errno.EROFS
        runtime.start(cid, root=rt.root)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        runtime.delete(cid, root=rt.root, force=True)
        if launch._protected_python is not None:
            os.close(launch._protected_python)


def test_shebang_to_proc_self_exe_cannot_touch_host_binary(rt: Runtime) -> None:
    host_python = os.path.realpath(sys.executable)
    before = hashlib.sha256(open(host_python, "rb").read()).hexdigest()  # noqa: SIM115
    b = rt.bundle("/evil")
    with open(os.path.join(b.rootfs, "evil"), "w") as f:
        f.write("#!/proc/self/exe\nimport os\nos.open('/proc/self/exe', os.O_WRONLY)\n")
    os.chmod(os.path.join(b.rootfs, "evil"), 0o755)
    b.config["root"]["readonly"] = False
    done = rt.run(b)
    assert done.returncode != 0  # the sealed copy finds no standard library in the container
    with open(host_python, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before


# CVE-2024-21626 class: no descriptor of the host in the container; cwd never outside the root.


def _fds_inside(done: subprocess.CompletedProcess[str]) -> set[str]:
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_no_host_fd_leaks_through_the_cli(rt: Runtime) -> None:
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # inheritable: the CLI gets it as fd `leak`
    try:
        os.set_inheritable(leak, True)
        b = rt.bundle("sh", "-c", "ls /proc/$$/fd; true")  # `; true`: sh stays pid 1, ls lists sh's fds
        b.write()
        done = rt("run", "-b", b.path, rt.new_id(), pass_fds=(leak,))
        assert _fds_inside(done) <= {"0", "1", "2"}
    finally:
        os.close(leak)


def test_preserve_fds_passes_exactly_those(rt: Runtime) -> None:
    r, w = os.pipe()
    try:
        b = rt.bundle("sh", "-c", "ls /proc/$$/fd; echo via-3 >&3; true")
        b.write()
        # fd 3 in the runtime = our pipe's write end; fd 4 a host directory it must not pass on
        script = (
            f"import os,sys; os.dup2({w}, 3); os.dup2(os.open('/', os.O_RDONLY), 4); "
            f"os.execv(sys.argv[1], sys.argv[1:])"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                rt.runtime_path,
                "--root",
                rt.root,
                "run",
                "--preserve-fds",
                "1",
                "-b",
                b.path,
                rt.new_id(),
            ],
            capture_output=True,
            text=True,
            pass_fds=(w,),
            timeout=30,
        )
        os.close(w)
        w = -1
        assert _fds_inside(done) == {"0", "1", "2", "3"}
        assert os.read(r, 100) == b"via-3\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_in_process_create_leaks_nothing_and_init_is_our_child(rt: Runtime) -> None:
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leak, True)
    out_path = os.path.join(rt.top, "out")
    b = rt.bundle("sh", "-c", "ls /proc/$$/fd; exit 5")
    b.write()
    cid = rt.new_id()
    try:
        with open(out_path, "w") as out, open(os.devnull) as devnull:
            runtime.create(cid, b.path, root=rt.root, stdio=(devnull.fileno(), out.fileno(), out.fileno()))
        pid = runtime.state(cid, root=rt.root)["pid"]
        runtime.start(cid, root=rt.root)
        _, status = os.waitpid(pid, 0)  # the init is a child of the caller (CLONE_PARENT)
        assert os.waitstatus_to_exitcode(status) == 5
        assert set(read(out_path).split()) <= {"0", "1", "2"}
        runtime.delete(cid, root=rt.root)
    finally:
        os.close(leak)


def test_cwd_through_a_leaked_fd_is_refused(rt: Runtime) -> None:
    for fd in range(3, 9):
        b = rt.bundle("pwd")
        b.config["process"]["cwd"] = f"/proc/self/fd/{fd}"
        done = rt.run(b)
        assert done.returncode == 1 and "process.cwd" in done.stderr, done.stdout


# CVE-2021-30465 class: mount targets resolved inside the rootfs, never through an escaping symlink.


def test_symlinked_mount_target_stays_in_rootfs(rt: Runtime) -> None:
    marker_dir = os.path.join(rt.top, "volume")
    os.makedirs(marker_dir)
    with open(os.path.join(marker_dir, "marker"), "w") as f:
        f.write("volume\n")
    escape = os.path.join(rt.top, "cais-rt-escape")
    os.makedirs(escape)
    b = rt.bundle("sh", "-c", "cat /inside/marker")
    os.makedirs(os.path.join(b.rootfs, "inside"))
    # ../../../.. climbs out of the rootfs on the host; an absolute link points at a host path
    os.symlink("../../../../../../../../" + escape.lstrip("/"), os.path.join(b.rootfs, "up"))
    os.symlink(escape + "-abs", os.path.join(b.rootfs, "abs"))
    b.config["mounts"] += [
        {"destination": "/up", "type": "bind", "source": marker_dir, "options": ["rbind"]},
        {"destination": "/abs", "type": "tmpfs", "source": "tmpfs", "options": []},
    ]
    b.config["process"]["args"] = [
        "sh",
        "-c",
        f"cat {escape}/marker; grep -c {escape}-abs /proc/self/mountinfo",
    ]
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    # both mounts landed on ROOTFS/<escape path> inside the container, never on the host's
    assert done.stdout.split() == ["volume", "1"]
    assert os.listdir(escape) == []
    with open("/proc/self/mountinfo") as f:
        assert escape not in f.read()


def test_init_is_non_dumpable_while_in_the_containers_namespaces(rt: Runtime) -> None:
    # In a user namespace, /proc/PID/* of a dumpable process belongs to its (mapped) uid; the
    # kernel gives a non-dumpable one's to the host's root instead.
    b = rt.bundle("true")
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    b.config["mounts"] = [m for m in b.config["mounts"] if m["type"] != "cgroup"]
    os.chmod(rt.top, 0o711)
    cid = rt.create(b)
    pid = rt.state(cid)["pid"]
    assert read(f"/proc/{pid}/status").split("Uid:\t")[1].split()[0] == "231072"
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0


def test_bind_source_inside_the_rootfs_is_resolved_inside_it(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "cat /seen/hostname")
    # rootfs/link -> /etc: on the host that is the host's /etc; in the container, its own
    os.symlink("/etc", os.path.join(b.rootfs, "link"))
    with open(os.path.join(b.rootfs, "etc", "hostname"), "w") as f:
        f.write("the-containers-own\n")
    b.config["mounts"].append({"destination": "/seen", "type": "bind", "source": "rootfs/link",
                               "options": ["rbind", "ro"]})
    done = rt.run(b)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the-containers-own"


def test_caller_with_closed_stdio(rt: Runtime) -> None:
    b = rt.bundle("sh", "-c", "ls /proc/$$/fd; true")
    b.write()
    script = ("import os, sys; os.close(0); os.close(1); from cais import runtime; "
              "out = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT, 0o644); "
              "runtime.create(sys.argv[1], sys.argv[2], root=sys.argv[4], stdio=(out, out, 2)); "
              "pid = runtime.state(sys.argv[1], root=sys.argv[4])['pid']; runtime.start(sys.argv[1], root=sys.argv[4]); "
              "os.waitpid(pid, 0); runtime.delete(sys.argv[1], root=sys.argv[4])")
    out = os.path.join(rt.top, "closed-stdio.out")
    done = subprocess.run([sys.executable, "-c", script, rt.new_id(), b.path, out, rt.root],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert set(read(out).split()) == {"0", "1", "2"}
