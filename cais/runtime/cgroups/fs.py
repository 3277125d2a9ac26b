"""Reading and writing cgroup control files, and removing cgroup directories.

Every failure becomes a CgroupError naming the file and the value, so the runtime can print one
clear line instead of an OSError traceback.
"""

from __future__ import annotations

import errno
import os
import time

from cais.runtime.cgroups.errors import CgroupError


def write(directory: str, name: str, value: str | int) -> None:
    path = os.path.join(directory, name)
    data = str(value)
    # cgroup files take one value per write(2): never let Python split or buffer it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise CgroupError(f"cannot write {data!r} to {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise CgroupError(f"cannot read {path}: {e.strerror}") from None


def read_optional(directory: str, name: str) -> str | None:
    """The file's content, or None when the kernel does not offer that file."""
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENODEV):
            return None
        raise CgroupError(f"cannot read {os.path.join(directory, name)}: {e.strerror}") from None


def parse_uint(text: str | None) -> int:
    """A counter or limit; "max" (v2's no limit) and a missing file read as 0."""
    if not text or text == "max":
        return 0
    return int(text.split()[0])


def read_uint(directory: str, name: str) -> int:
    return parse_uint(read_optional(directory, name))


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events…)."""
    out: dict[str, int] = {}
    for line in (read_optional(directory, name) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def makedirs(path: str) -> list[str]:
    """mkdir -p, returning the directories that were created (outermost first)."""
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    missing.reverse()
    for d in missing:
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {d}: {e.strerror}") from None
    return missing


def procs(directory: str) -> list[int]:
    """PIDs in a cgroup and its descendants."""
    found: set[int] = set()
    for d, _, _ in os.walk(directory):
        text = read_optional(d, "cgroup.procs")
        if text:
            found.update(int(p) for p in text.split())
    return sorted(found)


def write_proc(directory: str, pid: int) -> None:
    """Move a process into a cgroup; EINVAL can come from a process in the middle of a fork."""
    for attempt in range(5):
        try:
            write(directory, "cgroup.procs", pid)
            return
        except CgroupError:
            if attempt == 4 or not os.path.exists(f"/proc/{pid}"):
                raise
            time.sleep(0.03)


def remove(path: str) -> None:
    """rmdir a cgroup and every descendant (deepest first), retrying while processes exit.

    rmdir answers EBUSY while a cgroup still has members; a process that was just killed can
    take a moment to leave. After the retries the error names the PIDs still inside.
    """
    if not os.path.isdir(path):
        return
    dirs = [d for d, _, _ in os.walk(path)]
    for d in reversed(dirs):
        delay = 0.01
        for attempt in range(8):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == 7:
                    left = procs(d)
                    detail = f" (processes still inside: {left})" if left else ""
                    raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}{detail}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
