"""The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.

Every mount target inside the rootfs is opened with openat2(RESOLVE_IN_ROOT) and mounted through
/proc/self/fd/N, so a symlink planted in the rootfs (or swapped in during setup) can never point a
mount outside it (the CVE-2021-30465 class).
"""

from __future__ import annotations

import errno
import os
import stat

from cais.linux import mount as m
from cais.linux.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2
from cais.runtime.errors import ConfigError, suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_FLAGS = {  # option -> (set, clear)
    "ro": (m.MS_RDONLY, 0), "rw": (0, m.MS_RDONLY), "nosuid": (m.MS_NOSUID, 0), "suid": (0, m.MS_NOSUID),
    "nodev": (m.MS_NODEV, 0), "dev": (0, m.MS_NODEV), "noexec": (m.MS_NOEXEC, 0), "exec": (0, m.MS_NOEXEC),
    "sync": (m.MS_SYNCHRONOUS, 0), "async": (0, m.MS_SYNCHRONOUS), "dirsync": (m.MS_DIRSYNC, 0),
    "remount": (m.MS_REMOUNT, 0), "mand": (m.MS_MANDLOCK, 0), "nomand": (0, m.MS_MANDLOCK),
    "atime": (0, m.MS_NOATIME), "noatime": (m.MS_NOATIME, 0), "diratime": (0, m.MS_NODIRATIME),
    "nodiratime": (m.MS_NODIRATIME, 0), "relatime": (m.MS_RELATIME, 0), "norelatime": (0, m.MS_RELATIME),
    "strictatime": (m.MS_STRICTATIME, 0), "nostrictatime": (0, m.MS_STRICTATIME),
    "lazytime": (m.MS_LAZYTIME, 0), "nolazytime": (0, m.MS_LAZYTIME), "nosymfollow": (m.MS_NOSYMFOLLOW, 0),
    "bind": (m.MS_BIND, 0), "rbind": (m.MS_BIND | m.MS_REC, 0),
}
PROPAGATION = {
    "private": m.MS_PRIVATE, "rprivate": m.MS_PRIVATE | m.MS_REC, "shared": m.MS_SHARED,
    "rshared": m.MS_SHARED | m.MS_REC, "slave": m.MS_SLAVE, "rslave": m.MS_SLAVE | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE, "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}
_IGNORED = {"tmpcopyup", "idmap", "ridmap", "defaults"}
_LOCKED = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC | m.MS_RDONLY  # statvfs ST_* have the same values

DEFAULT_DEVICES = [  # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666), ("/dev/zero", "c", 1, 5, 0o666), ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666), ("/dev/urandom", "c", 1, 9, 0o666), ("/dev/tty", "c", 5, 0, 0o666),
]
DEV_SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Mount options -> (flags, propagation flags, data string)."""
    flags = propagation = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            flags = (flags | on) & ~off
        elif opt in PROPAGATION:
            propagation |= PROPAGATION[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, propagation, ",".join(data)


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_in_root(rootfd: int, path: str, create: str | None = None) -> int:
    """An O_PATH fd of PATH resolved inside the root (symlinks cannot leave it).

    create="dir"/"file" makes the missing components (the last one of that kind), following
    dangling symlinks inside the root as the kernel would after a chroot.
    """
    rel = path.lstrip("/") or "."
    try:
        return openat2(rootfd, rel, os.O_PATH, _IN_ROOT)
    except FileNotFoundError:
        if create is None:
            raise
    _create_in_root(rootfd, rel, create)
    return openat2(rootfd, rel, os.O_PATH, _IN_ROOT)


def _create_in_root(rootfd: int, rel: str, kind: str, depth: int = 0) -> None:
    if depth > 40:
        raise OSError(errno.ELOOP, "too many symlinks", rel)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    for i, name in enumerate(parts):
        try:
            os.close(openat2(rootfd, "/".join([*done, name]), os.O_PATH, _IN_ROOT))
            done.append(name)
            continue
        except FileNotFoundError:
            pass
        parent = openat2(rootfd, "/".join(done) or ".", os.O_PATH | os.O_DIRECTORY, _IN_ROOT)
        try:
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError:
                target = None
            if target is not None:  # a dangling symlink: create what it points to, inside the root
                base = [] if target.startswith("/") else done
                _create_in_root(rootfd, "/".join([*base, target.lstrip("/"), *parts[i + 1:]]), kind, depth + 1)
                return
            if kind == "file" and i == len(parts) - 1:
                with suppress(FileExistsError):
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=parent))
            else:
                with suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=parent)
        finally:
            os.close(parent)
        done.append(name)


def remount(rootfd: int, path: str, flags: int) -> None:
    """Remount the mount at PATH (bind) with FLAGS, keeping the flags the kernel locks."""
    fd = open_in_root(rootfd, path)
    try:
        locked = os.statvfs(fdpath(fd)).f_flag & _LOCKED
        m.mount(None, fdpath(fd), None, m.MS_REMOUNT | m.MS_BIND | flags | locked)
    finally:
        os.close(fd)


class Rootfs:
    """Mounts a config's rootfs and mounts, pre-pivot, in the container's mount namespace."""

    def __init__(self, config: dict[str, Any], bundle: str, new_cgroupns: bool,
                 warn: Callable[[str], None]) -> None:
        self.config = config
        self.path = config["root"]["path"]
        self.bundle = bundle
        self.new_cgroupns = new_cgroupns
        self.warn = warn
        self.rootfd = -1

    def prepare(self) -> None:
        linux = self.config.get("linux", {})
        propagation = PROPAGATION.get(linux.get("rootfsPropagation", "rslave"), m.MS_SLAVE | m.MS_REC)
        m.mount(None, "/", None, propagation)
        _parent_mount_private(self.path)
        m.mount(self.path, self.path, None, m.MS_BIND | m.MS_REC)
        self.rootfd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        dev_bound = False
        for entry in self.config.get("mounts", []):
            self.mount_entry(entry)
            if entry["destination"] == "/dev" and "bind" in self._kind(entry):
                dev_bound = True
        if not dev_bound:
            self.make_devices(linux.get("devices", []))

    @staticmethod
    def _kind(entry: dict[str, Any]) -> str:
        opts = entry.get("options", [])
        if entry.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            return "bind"
        return entry.get("type") or "none"

    def mount_entry(self, entry: dict[str, Any]) -> None:
        dest = entry["destination"]
        kind = self._kind(entry)
        flags, propagation, data = parse_options(entry.get("options", []))
        source = entry.get("source", "")
        if kind == "bind":
            if not os.path.isabs(source):
                source = os.path.join(self.bundle, source)
            source = os.path.normpath(source)
            try:
                if source == self.path or source.startswith(self.path + "/"):
                    # a source inside the rootfs is the container's: resolved inside it, like a target
                    srcfd = open_in_root(self.rootfd, source[len(self.path):])
                else:
                    srcfd = os.open(source, os.O_PATH | os.O_CLOEXEC)
            except OSError as e:
                raise ConfigError(f"mount {dest}: source {source}: {e.strerror}") from None
            try:
                is_dir = stat.S_ISDIR(os.fstat(srcfd).st_mode)
                target = open_in_root(self.rootfd, dest, "dir" if is_dir else "file")
                try:
                    m.mount(fdpath(srcfd), fdpath(target), None, m.MS_BIND | (flags & m.MS_REC))
                finally:
                    os.close(target)
            finally:
                os.close(srcfd)
            extra = flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
            if extra:
                remount(self.rootfd, dest, extra)
        elif kind == "cgroup":
            self.mount_cgroup(dest, flags)
        else:
            target = open_in_root(self.rootfd, dest, "dir")
            try:
                self._mount_fs(source or kind, fdpath(target), kind, flags, data, dest)
            finally:
                os.close(target)
        if propagation:
            target = open_in_root(self.rootfd, dest)
            try:
                m.mount(None, fdpath(target), None, propagation)
            finally:
                os.close(target)

    def _mount_fs(self, source: str, target: str, fstype: str, flags: int, data: str, dest: str) -> None:
        try:
            m.mount(source, target, fstype, flags, data or None)
        except PermissionError:
            # sysfs needs a network namespace of our own, mqueue an IPC one: fall back to the host's,
            # as runc does.
            host = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}.get(fstype)
            if host is None:
                raise
            m.mount(host, target, None, m.MS_BIND | m.MS_REC)
            if flags & _LOCKED:
                remount(self.rootfd, dest, flags & _LOCKED)
        except OSError as e:
            raise ConfigError(f"mount {fstype} on {dest}: {e.strerror}") from None

    def mount_cgroup(self, dest: str, flags: int) -> None:
        """/sys/fs/cgroup: cgroup2 on a unified host; on v1 a tmpfs of the container's hierarchies.

        In a cgroup namespace of its own the container mounts the hierarchies themselves (it sees
        its cgroup as the root); otherwise its own cgroup directories are bound from the host's.
        """
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
        unified_only = all(controllers == "" for _, controllers, _ in lines)
        writable = flags & ~m.MS_RDONLY
        target = open_in_root(self.rootfd, dest, "dir")
        try:
            if unified_only and self.new_cgroupns:
                m.mount("cgroup2", fdpath(target), "cgroup2", writable)
            elif unified_only:
                m.mount(os.path.join("/sys/fs/cgroup", lines[0][2].lstrip("/")), fdpath(target), None, m.MS_BIND)
            else:
                m.mount("tmpfs", fdpath(target), "tmpfs", writable, "mode=755")
        finally:
            os.close(target)
        if not unified_only:
            self._mount_hierarchies(dest, lines, writable)
        if flags & m.MS_RDONLY:
            remount(self.rootfd, dest, m.MS_RDONLY | flags)

    def _mount_hierarchies(self, dest: str, lines: list[list[str]], writable: int) -> None:
        """cgroup v1: each hierarchy on a directory of its own in the tmpfs just mounted at DEST.
        Nobody else has written to that tmpfs: its directories are made and opened by name."""
        tmpfs = open_in_root(self.rootfd, dest)
        try:
            for _, controllers, path in lines:
                name = controllers.replace("name=", "") if controllers else "unified"
                host = os.path.join("/sys/fs/cgroup", name)
                if not os.path.isdir(host):
                    continue
                with suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=tmpfs)
                sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmpfs)
                try:
                    if self.new_cgroupns:
                        m.mount("cgroup", fdpath(sub), "cgroup" if controllers else "cgroup2", writable,
                                controllers or None)
                    else:
                        m.mount(os.path.join(host, path.lstrip("/")), fdpath(sub), None, m.MS_BIND)
                finally:
                    os.close(sub)
                if "," in name:  # cpu,cpuacct: the same hierarchy under each controller's name
                    for alias in name.split(","):
                        with suppress(FileExistsError):
                            os.symlink(name, alias, dir_fd=tmpfs)
        finally:
            os.close(tmpfs)

    def make_devices(self, devices: list[dict[str, Any]]) -> None:
        wanted = {d[0]: d for d in DEFAULT_DEVICES}
        for d in devices:
            wanted[d["path"]] = (d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
                                 d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0))
        dev = open_in_root(self.rootfd, "/dev", "dir")
        try:
            for spec in wanted.values():
                self._make_device(*spec, dev=dev)
            links = list(DEV_SYMLINKS)
            if os.path.exists("/proc/kcore"):
                links.append(("/proc/kcore", "/dev/core"))
            links.append(("pts/ptmx", "/dev/ptmx"))
            for target, link in links:
                name = os.path.basename(link)
                try:
                    if name == "ptmx":  # the devpts instance's ptmx replaces any node there
                        os.unlink(name, dir_fd=dev)
                except FileNotFoundError:
                    pass
                with suppress(FileExistsError):
                    os.symlink(target, name, dir_fd=dev)
        finally:
            os.close(dev)

    def _make_device(self, path: str, kind: str, major: int, minor: int, mode: int, uid: int = 0,
                     gid: int = 0, *, dev: int = -1) -> None:
        """The node at PATH; DEV: /dev, open already (most nodes are right in it)."""
        parent_path, name = os.path.split(path)
        opened = parent_path != "/dev" or dev < 0
        parent = open_in_root(self.rootfd, parent_path, "dir") if opened else dev
        try:
            kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
            if kind not in kinds:
                raise ConfigError(f"device {path}: unknown type {kind!r}")
            with suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=parent)
            try:
                os.mknod(name, kinds[kind] | (mode & 0o7777), os.makedev(major, minor), dir_fd=parent)
                os.chmod(name, mode & 0o7777, dir_fd=parent)  # mknod obeys the umask
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
                return
            except PermissionError:
                pass  # in a user namespace: bind the host's node instead, as runc does
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=parent))
        finally:
            if opened:
                os.close(parent)
        target = open_in_root(self.rootfd, path)
        try:
            m.mount(path, fdpath(target), None, m.MS_BIND)
        finally:
            os.close(target)

    def pivot(self, no_pivot: bool) -> None:
        """Make the rootfs `/`: pivot_root, or MS_MOVE + chroot where pivot is impossible."""
        os.close(self.rootfd)
        self.rootfd = -1
        if not no_pivot:
            try:
                _pivot_root(self.path)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self.warn("pivot_root impossible here (rootfs on initramfs?): falling back to MS_MOVE")
        os.chdir(self.path)
        m.mount(self.path, "/", None, m.MS_MOVE)
        os.chroot(".")
        os.chdir("/")


def _parent_mount_private(path: str) -> None:
    """runc's rootfsParentMountPrivate: with an rshared root (shared binds), the mount holding the
    rootfs must not be shared, or its bind would propagate back and pivot_root refuses (EINVAL)."""
    while True:
        try:
            m.mount(None, path, None, m.MS_PRIVATE)
            return
        except OSError as e:
            if e.errno != errno.EINVAL or path == "/":
                raise
            path = os.path.dirname(path)


def _pivot_root(path: str) -> None:
    """runc's pivot_root(".", "."): no put_old directory; the old root is detached right away."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        m.pivot_root(".", ".")
        os.fchdir(old)
        m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)  # never propagate the unmount to the host
        m.umount(".", m.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def finish(config: dict[str, Any]) -> None:
    """After pivot: masked and read-only paths, then the read-only root."""
    linux = config.get("linux", {})
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in linux.get("readonlyPaths", []):
            try:
                fd = open_in_root(root, path)
            except FileNotFoundError:
                continue
            try:
                m.mount(fdpath(fd), fdpath(fd), None, m.MS_BIND | m.MS_REC)
            finally:
                os.close(fd)
            remount(root, path, m.MS_RDONLY | m.MS_REC)
        for path in linux.get("maskedPaths", []):
            try:
                fd = open_in_root(root, path)
            except FileNotFoundError:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    m.mount("tmpfs", fdpath(fd), "tmpfs", m.MS_RDONLY)
                else:
                    m.mount("/dev/null", fdpath(fd), None, m.MS_BIND)
            finally:
                os.close(fd)
        if config["root"].get("readonly"):
            remount(root, "/", m.MS_RDONLY)
    finally:
        os.close(root)


def write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        if "/" in key or key.startswith(".") or ".." in key:
            raise ConfigError(f"invalid sysctl {key!r}")
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        except OSError as e:
            raise ConfigError(f"sysctl {key}: {e.strerror}") from None
