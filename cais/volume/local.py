"""The `local` volume driver: a directory DATA_ROOT/volumes/NAME/_data, or a mount made there.

Options are docker's local driver's: `type`, `device` and `o` — what mount(8) would take
(`type=tmpfs device=tmpfs o=size=64m`, `type=none device=/srv/data o=bind`). A volume with
options is mounted at its first use and unmounted when the last container using it stops.
Removing a volume never follows a mount: its directory is deleted only once `_data` is no longer
a mount point, so a bind-type volume cannot take the host directory it points at with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat

from cais.linux import mount as m
from cais.linux.mountinfo import is_mount_point
from cais.volume.driver import VolumeDriver
from cais.volume.errors import InvalidVolume, VolumeError

VALID_OPTIONS = ("type", "device", "o")
REQUIRED = {"device": ("type",), "type": ("device",), "o": ("device", "type")}  # docker's mandatoryOpts
_FLAGS = {  # mount(8) option -> (set, clear)
    "ro": (m.MS_RDONLY, 0), "rw": (0, m.MS_RDONLY), "nosuid": (m.MS_NOSUID, 0), "suid": (0, m.MS_NOSUID),
    "nodev": (m.MS_NODEV, 0), "dev": (0, m.MS_NODEV), "noexec": (m.MS_NOEXEC, 0), "exec": (0, m.MS_NOEXEC),
    "sync": (m.MS_SYNCHRONOUS, 0), "async": (0, m.MS_SYNCHRONOUS), "dirsync": (m.MS_DIRSYNC, 0),
    "noatime": (m.MS_NOATIME, 0), "atime": (0, m.MS_NOATIME), "nodiratime": (m.MS_NODIRATIME, 0),
    "relatime": (m.MS_RELATIME, 0), "strictatime": (m.MS_STRICTATIME, 0), "bind": (m.MS_BIND, 0),
    "rbind": (m.MS_BIND | m.MS_REC, 0), "defaults": (0, 0),
}


def parse_o(o: str) -> tuple[int, str]:
    """`o` (mount(8)'s -o) → (flags, data)."""
    flags, data = 0, []
    for opt in (x for x in o.split(",") if x):
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            flags = (flags | on) & ~off
        else:
            data.append(opt)
    return flags, ",".join(data)


class LocalDriver(VolumeDriver):
    name = "local"

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o701, exist_ok=True)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def validate(self, options: dict[str, str]) -> None:
        for key, value in options.items():
            if key not in VALID_OPTIONS:
                if key == "size":
                    raise InvalidVolume("quota size requested but no quota support")
                raise InvalidVolume(f'invalid option: "{key}"')
            if not isinstance(value, str):
                raise InvalidVolume(f'invalid option "{key}": expected a string')
        for key, needs in REQUIRED.items():
            for need in needs:
                if key in options and need not in options:
                    raise InvalidVolume(f'missing required option: "{need}"')
        flags, _ = parse_o(options.get("o", ""))
        if flags & m.MS_BIND:
            device = options.get("device", "")
            if not os.path.isabs(device) or ".." in device.split("/"):
                raise InvalidVolume(f"invalid device for a bind volume: {device!r}: an absolute path is required")
            if not os.path.isdir(device):
                raise InvalidVolume(f"failed to mount local volume: mount {device}: no such directory")

    def create(self, name: str, options: dict[str, str]) -> None:
        self.validate(options)
        top = self._dir(name)
        os.mkdir(top, 0o701)
        try:
            os.mkdir(self.path(name), 0o755)
            if options.get("type") == "tmpfs":  # a trial mount: a bad size or mode fails now, not at run
                try:
                    self.mount(name, options)
                except VolumeError as e:
                    raise InvalidVolume(str(e)) from None
                self.unmount(name, options)
        except BaseException:
            shutil.rmtree(top, ignore_errors=True)
            raise

    def mount(self, name: str, options: dict[str, str]) -> str:
        path = self.path(name)
        if not options.get("type") or is_mount_point(path):
            return path
        flags, data = parse_o(options.get("o", ""))
        device, fstype = options["device"], options["type"]
        try:
            if flags & m.MS_BIND:
                m.mount(device, path, None, flags & (m.MS_BIND | m.MS_REC))
                extra = flags & ~(m.MS_BIND | m.MS_REC)
                if extra:
                    m.mount(None, path, None, m.MS_REMOUNT | m.MS_BIND | extra)
            else:
                m.mount(device, path, None if fstype == "none" else fstype, flags, data or None)
        except OSError as e:
            with contextlib.suppress(OSError):
                if is_mount_point(path):
                    m.umount(path, m.MNT_DETACH)
            raise VolumeError(f"failed to mount local volume: mount {device}:{path}, type {fstype}, "
                              f"data {options.get('o', '')!r}: {e.strerror or e}") from None
        return path

    def unmount(self, name: str, options: dict[str, str]) -> None:
        path = self.path(name)
        while options.get("type") and is_mount_point(path):
            try:
                m.umount(path)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise VolumeError(f"unmount {path}: {e.strerror}") from None
                m.umount(path, m.MNT_DETACH)

    def remove(self, name: str, options: dict[str, str]) -> None:
        self.unmount(name, options)
        top, path = self._dir(name), self.path(name)
        if is_mount_point(path):
            raise VolumeError(f"remove {name}: {path} is still a mount point")
        with contextlib.suppress(FileNotFoundError):
            # rename first: a crash halfway leaves no half-deleted volume under its own name
            gone = os.path.join(self.root, f".removing-{name}-{secrets.token_hex(4)}")
            os.rename(top, gone)
            shutil.rmtree(gone)

    def size(self, name: str) -> int:
        total = 0
        top = self.path(name)
        try:
            dev = os.lstat(top).st_dev
        except OSError:
            return -1
        for dirpath, dirnames, filenames in os.walk(top):
            for d in list(dirnames):
                with contextlib.suppress(OSError):
                    if os.lstat(os.path.join(dirpath, d)).st_dev != dev:
                        dirnames.remove(d)
            for f in filenames:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, f))
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total
