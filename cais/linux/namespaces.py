"""unshare(2), setns(2) and the CLONE_NEW* flags of the seven namespaces a container uses.

ctypes and libc are loaded at the first call: the command line needs the flags only (ctypes
costs ~4 ms of its start).
"""

from __future__ import annotations

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# OCI namespace type -> (clone flag, name under /proc/PID/ns/)
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}


def unshare(flags: int) -> None:
    from cais.linux.libc import check, libc

    check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    from cais.linux.libc import check, libc

    check(libc.setns(fd, nstype), "setns")


_SYS_clone = 56  # x86_64: clone(flags, newsp, parent_tid, child_tid, tls)
_SIGCHLD = 17
CLONE_PARENT = 0x00008000


def clone(flags: int) -> int:
    """fork(2) with namespace flags: returns 0 in the child, the child's pid in the parent.

    The child runs on a copy of the caller's stack, like fork. It skips the interpreter's
    after-fork hooks, so call this only from a single-threaded process.
    """
    import ctypes

    from cais.linux.libc import check, libc

    return check(libc.syscall(_SYS_clone, ctypes.c_ulong(flags | _SIGCHLD), None, None, None, None), "clone")


_SYS_clone3 = 435
CLONE_INTO_CGROUP = 0x200000000


def clone3(flags: int, cgroup_fd: int) -> int:
    """clone() into the cgroup v2 directory CGROUP_FD (CLONE_INTO_CGROUP, Linux 5.7): the child is
    born there, with no migration afterwards (a write to cgroup.procs waits for an RCU grace
    period, milliseconds, unless the hierarchy is mounted with favordynmods). Same caveats as
    clone(); raises OSError where the kernel or the cgroup refuses (the caller moves the child)."""
    import ctypes

    from cais.linux.libc import check, libc

    class CloneArgs(ctypes.Structure):  # struct clone_args, linux/sched.h (CLONE_ARGS_SIZE_VER2)
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
            "set_tid", "set_tid_size", "cgroup")]

    # With CLONE_PARENT the child's exit signal is the caller's own: clone3 wants 0 there.
    exit_signal = 0 if flags & CLONE_PARENT else _SIGCHLD
    args = CloneArgs(flags=flags | CLONE_INTO_CGROUP, exit_signal=exit_signal, cgroup=cgroup_fd)
    return check(libc.syscall(_SYS_clone3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))), "clone3")
