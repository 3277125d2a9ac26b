"""A directory treated as `/`: every path inside it is resolved by the kernel, never in user space.

A container's or an image's root filesystem is written by whoever controls the container: its
symlinks may point at `/`, climb with `..` chains, loop, or be swapped between a check and a use
by another process (another container sharing a volume, say). Each path is therefore opened in one
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) call relative to the root's fd, so absolute
targets and `..` stop at the root, atomically; what follows works on the fd it returned (the
parent directory of an entry, then the *at calls on a name in it with the last component never
followed unless asked). Used by `docker cp` (cais/engine/archive.py), COPY/ADD (cais/image/build/
copier.py) and the /etc/passwd lookups of a container's user.
"""

from __future__ import annotations

import errno
import os
import stat

from cais.linux.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV, openat2

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_RETRIES = 1000
_MAX_LINKS = 40  # dangling symlinks resolve() follows by hand, as the kernel's own limit


def components(path: str) -> list[str]:
    """The names of `path`, without empty ones and '.' (`..` is left to the kernel)."""
    return [p for p in path.split("/") if p not in ("", ".")]


class RootDir:
    """An open directory that paths are resolved in as if it were `/`.

    `cross_mounts=False` adds RESOLVE_NO_XDEV: a path may not leave the root's mount (right for an
    image's root filesystem; a container's has its volumes mounted inside it).
    """

    def __init__(self, fd: int, *, cross_mounts: bool = True) -> None:
        self.fd = fd
        self.flags = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (0 if cross_mounts else RESOLVE_NO_XDEV)

    @classmethod
    def at(cls, path: str, *, cross_mounts: bool = True) -> RootDir:
        """Open the directory `path` (the caller's path: followed, as a bind source is)."""
        return cls(os.open(path, _DIR), cross_mounts=cross_mounts)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RootDir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- resolving ---------------------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_PATH, mode: int = 0, *, follow: bool = True) -> int:
        """An fd of `path`; without `follow` a symlink as the last component is opened itself
        (O_PATH) or refused (ELOOP, other flags). Retries the EAGAIN a rename anywhere on the system
        may cause while `..` is resolved — a bounded number of times, so that a container renaming
        in a loop cannot keep the daemon spinning."""
        rel = "/".join(components(path)) or "."
        flags |= os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        for _ in range(_RETRIES):
            try:
                return openat2(self.fd, rel, flags, self.flags, mode)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINTR):
                    raise
        return openat2(self.fd, rel, flags, self.flags, mode)

    def parent(self, path: str) -> tuple[int, str]:
        """An O_PATH fd of the directory holding `path`'s last component, and that name. A path
        whose last component is `..` (or that is the root) has no name in a parent: its own
        directory and "" come back."""
        parts = components(path)
        if not parts or parts[-1] == "..":
            return self.open(path, _DIR), ""
        return self.open("/".join(parts[:-1]), _DIR), parts[-1]

    def lstat(self, path: str) -> os.stat_result:
        fd, name = self.parent(path)
        try:
            return os.stat(name or ".", dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def stat(self, path: str) -> os.stat_result:
        fd = self.open(path)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def isdir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def path_of(self, fd: int) -> str:
        """Where the fd is inside the root, as an absolute path (what docker reports as a
        symlink's LinkTarget); read from the kernel's name of the fd, never walked."""
        top = os.readlink(f"/proc/self/fd/{self.fd}")
        here = os.readlink(f"/proc/self/fd/{fd}")
        if here == top:
            return "/"
        prefix = top.rstrip("/") + "/"
        if not here.startswith(prefix):
            raise OSError(errno.EXDEV, "not inside the root", here)
        return "/" + here[len(prefix):]

    def resolve(self, path: str, *, follow: bool = True) -> str:
        """Where `path` leads inside the root, as an absolute path, the way securejoin answers: a
        dangling symlink leads to its target, and names that do not exist are kept as written (a
        `..` after one drops it). Each step is the kernel's; only for roots nobody else writes to
        meanwhile, since a name can be raced where an fd cannot."""
        parts = components(path)
        walked: list[str] = []
        missing: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if missing:
                if part == "..":
                    missing.pop()
                else:
                    missing.append(part)
                continue
            here = "/".join([*walked, part])
            try:
                os.close(self.open(here, follow=follow or bool(parts)))
                walked.append(part)
                continue
            except (FileNotFoundError, NotADirectoryError):
                target = self._readlink(here)
            if target is None:
                missing.append(part)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            if target.startswith("/"):
                walked = []
            parts = components(target) + parts
        fd = self.open("/".join(walked), follow=follow or bool(missing) or not walked)
        try:
            inside = self.path_of(fd)
        finally:
            os.close(fd)
        return "/" + "/".join([*components(inside), *missing])

    def _readlink(self, path: str) -> str | None:
        """The target of `path` when it is a symlink (the last component not followed), else None."""
        try:
            parent, name = self.parent(path)
        except OSError:
            return None
        try:
            return os.readlink(name, dir_fd=parent) if name else None
        except OSError:
            return None
        finally:
            os.close(parent)

    def host_path(self, path: str, *, follow: bool = True) -> str:
        """The host path of resolve(path), for callers that need a name (a bind source, a
        builder's read-only checks)."""
        top = os.readlink(f"/proc/self/fd/{self.fd}")
        return os.path.join(top, *components(self.resolve(path, follow=follow)))

    # ---- creating ----------------------------------------------------------------------------
    def makedirs(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> int:
        """`mkdir -p` inside the root: missing directories get `mode` (umask ignored) and uid:gid.
        Returns an O_PATH fd of the directory. A symlink on the way is followed inside the root;
        a non-directory in the way is an error (ENOTDIR)."""
        parts = components(path)
        done: list[str] = []
        for part in parts:
            try:
                os.close(self.open("/".join([*done, part]), _DIR))
            except FileNotFoundError:
                parent = self.open("/".join(done), _DIR)
                try:
                    _mkdir_owned(parent, part, mode, uid, gid)
                finally:
                    os.close(parent)
            done.append(part)
        return self.open("/".join(done), _DIR)

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        """A small text file's contents (None if it cannot be read)."""
        try:
            fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return None
        finally:
            os.close(fd)


def _mkdir_owned(parent: int, name: str, mode: int, uid: int, gid: int) -> None:
    """mkdirat, then chown/chmod through an fd of what was made (never a path that could be swapped)."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        return  # made meanwhile, or a dangling symlink: the caller's next open decides
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def read_text(root: str, path: str) -> str | None:
    """`path` of the root file system at `root` (a /proc/PID/root too), or None."""
    try:
        with RootDir.at(root) as r:
            return r.read_text(path)
    except OSError:
        return None
