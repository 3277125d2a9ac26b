"""A user namespace that exists only to carry an id mapping: what mount_setattr(2) takes to make
an idmapped mount (cais.linux.fsmount.set_idmap).

A child process unshares a user namespace, the caller writes its uid_map and gid_map and opens
/proc/CHILD/ns/user; the child then exits, and the namespace lives on as long as the descriptor.
"""

from __future__ import annotations

import contextlib
import os

from cais.linux.namespaces import CLONE_NEWUSER, unshare

Mapping = list[tuple[int, int, int]]  # (id inside, id outside, count), as /proc/PID/uid_map lines


def user_namespace(uid_map: Mapping, gid_map: Mapping) -> int:
    """An O_CLOEXEC descriptor of a new user namespace with these mappings."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        raise
    if pid == 0:  # the child: only system calls, then _exit
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            unshare(CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        except BaseException:  # noqa: BLE001 - the parent sees the empty read
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("cannot make a user namespace (unshare CLONE_NEWUSER failed)")
        for name, mapping in (("uid_map", uid_map), ("gid_map", gid_map)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(f"{inside} {outside} {count}\n" for inside, outside, count in mapping))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        with contextlib.suppress(ChildProcessError):  # reaped by a SIGCHLD handler of the caller's
            os.waitpid(pid, 0)
