"""The engine's volumes: cais.volume's service for the API, and the mounts of each container.

A container's mounts are resolved once, at create (volumes created and referenced, `-v` host
directories made, everything validated), and kept in its record: docker's `Mounts` for inspect,
cais's full mount points under Cais.MountPoints. At start named and anonymous volumes are
mounted (and filled from the image when empty), at exit unmounted, at removal released — the
anonymous ones deleted with `rm -v` / `--rm` once no other container uses them.

userns-remap: a remapped container gets its volumes (and its binds marked `idmap`) as idmapped
mounts of its mapping, attached under DATA_ROOT/idmapped/CID where its root can reach them (and
which nothing ever walks with rmtree): files keep the owners the container gives them, so a
volume serves containers of any mapping alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator

from cais.engine.errors import Conflict, EngineError, InvalidParameter, NotFound
from cais.engine.userns import IdMap
from cais.linux import fsmount
from cais.linux.mount import MNT_DETACH, MS_BIND, MS_PRIVATE, mount, umount
from cais.linux.mountinfo import is_mount_point, mount_of
from cais.storage.errors import InvalidLayer
from cais.storage.idshift import shift_tree, user_namespace
from cais.volume import copyup, mounts
from cais.volume.errors import VolumeError
from cais.volume.mounts import MountPoint
from cais.volume.service import Volumes

log = logging.getLogger("cais.engine.volumes")


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except VolumeError as e:
        cls = {400: InvalidParameter, 404: NotFound, 409: Conflict}.get(e.status, EngineError)
        raise cls(str(e)) from None


def _depth(mp: MountPoint) -> int:
    return mp.destination.rstrip("/").count("/")


class VolumeService:
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.volumes = Volumes(os.path.join(engine.data_root, "volumes"))
        self.staging_root = os.path.join(engine.exec_root, "volume-subpaths")
        self.idmapped_root = os.path.join(engine.data_root, "idmapped")
        if engine.remap is not None:  # volume files have the containers' owners: root's eyes only
            os.chmod(self.volumes.root, 0o700)
        self.held: dict[str, list[str]] = {}  # container -> staging mounts of the volume subpaths it binds

    def _event(self, action: str, name: str, **attrs: str) -> None:
        self.engine.events.emit("volume", action, name, {"driver": "local", **attrs})

    # ---- the /volumes API ------------------------------------------------------------------
    def create(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid volume create request")
        with _errors():
            known = self.volumes.meta.get(body["Name"]) if isinstance(body.get("Name"), str) else None
            doc = self.volumes.create(body.get("Name") or None, body.get("Driver") or None, body.get("Labels"),
                                      body.get("DriverOpts"))
        if known is None:
            self._event("create", doc["Name"])
        return doc

    def inspect(self, name: str) -> dict:
        with _errors():
            return self.volumes.inspect(name)

    def list(self, filters: dict | None = None) -> dict:
        with _errors():
            return {"Volumes": self.volumes.list(filters), "Warnings": None}

    def remove(self, name: str, force: bool = False) -> None:
        with _errors():
            existed = self.volumes.meta.get(name) is not None
            self.volumes.remove(name, force=force)
        if existed:
            self._event("destroy", name)

    def prune(self, filters: dict | None = None) -> dict:
        with _errors():
            result = self.volumes.prune(filters)
        for name in result["VolumesDeleted"] or []:
            self._event("destroy", name)
        return result

    def disk_usage(self) -> list[dict]:
        return self.volumes.list(usage=True)

    # ---- containers ---------------------------------------------------------------------------
    def prepare(self, cid: str, host: dict, config_volumes: dict | None, image_volumes: dict | None) -> list[dict]:
        """Resolve a new container's mounts: the mount points to keep in its record (as dicts)."""
        created: list[str] = []
        try:
            with _errors(), self.volumes.lock:  # "is it new?" and its creation, at once
                points = self._parse(host, config_volumes, image_volumes)
                for mp in points:
                    if mp.type == "bind":
                        mounts.check_bind_source(mp)
                    elif mp.type == "volume":
                        known = bool(mp.name) and self.volumes.meta.get(mp.name) is not None
                        doc = self.volumes.create(mp.name or None, mp.driver or None, mp.labels or None,
                                                  mp.driver_options or None, anonymous=not mp.name)
                        if not known:
                            created.append(doc["Name"])
                            self._event("create", doc["Name"])
                        mp.name, mp.driver, mp.source = doc["Name"], doc["Driver"], doc["Mountpoint"]
                        self.volumes.use(mp.name, cid)
            return [mp.to_dict() for mp in points]
        except BaseException:
            self.volumes.release(cid)
            for name in created:
                with contextlib.suppress(VolumeError):
                    self.volumes.remove(name)
            raise

    def _parse(self, host: dict, config_volumes: dict | None, image_volumes: dict | None) -> list[MountPoint]:
        by_dest: dict[str, MountPoint] = {}
        for raw in _list(host.get("VolumesFrom"), "VolumesFrom"):
            ref, mode = mounts.parse_volumes_from(raw)
            try:
                other = self.engine.get(ref)
            except NotFound:
                raise InvalidParameter(f"No such container: {ref}") from None
            for d in (other.get("Cais") or {}).get("MountPoints") or []:
                mp = MountPoint.from_dict(d)
                if mp.type == "tmpfs":
                    continue
                mp.rw = mp.rw and mode != "ro"  # a read-only mount stays read-only
                mp.copy_data = False
                mp.create_source = False
                by_dest[mp.destination] = mp
        fresh: dict[str, MountPoint] = {}
        for mp in [*map(mounts.parse_bind, _list(host.get("Binds"), "Binds")),
                   *map(mounts.parse_mount, _list(host.get("Mounts"), "Mounts"))]:
            if mp.destination in fresh:
                raise InvalidParameter(f"Duplicate mount point: {mp.destination}")
            fresh[mp.destination] = mp
        tmpfs = host.get("Tmpfs") or {}
        if not isinstance(tmpfs, dict):
            raise InvalidParameter("invalid HostConfig.Tmpfs: expected an object")
        for path, opts in tmpfs.items():
            if mounts.parse_tmpfs(path, opts).destination in fresh:
                raise InvalidParameter(f"Duplicate mount point: {path}")
        by_dest.update(fresh)
        for source in (image_volumes, config_volumes):
            for path in (source or {}) if isinstance(source, dict) else []:
                dest = mounts.clean_target(path)
                if dest not in by_dest and dest not in tmpfs:
                    by_dest[dest] = MountPoint("volume", dest)  # anonymous
        return sorted(by_dest.values(), key=_depth)

    @staticmethod
    def points(record: dict) -> list[MountPoint]:
        return [MountPoint.from_dict(d) for d in (record.get("Cais") or {}).get("MountPoints") or []]

    def mount(self, record: dict, rootfs: str) -> tuple[list[dict], str | None]:
        """Mount a starting container's volumes: its OCI mounts and the rootfs propagation they need."""
        cid = record["Id"]
        remap = self.engine.storage.remap(cid)
        out, propagation = [], None
        try:
            with _errors():
                for mp in self.points(record):
                    if mp.type == "volume":
                        mp.source = self.volumes.mount(mp.name, cid)
                        if mp.subpath:
                            mp.source = self._hold_subpath(cid, mp, remap)
                        else:
                            if mp.copy_data and copyup.is_empty(mp.source):
                                self._copy_up(rootfs, mp, remap)
                            if remap is not None:
                                mp.source = self._hold(cid, mp.source, remap, f"volume {mp.name}")
                        self._event("mount", mp.name, container=cid, destination=mp.destination,
                                    propagation=mp.propagation, **{"read/write": str(mp.rw).lower()})
                    if mp.type in ("volume", "bind"):
                        mounts.check_target_kind(mp.source, mp.destination,
                                                 copyup.source_is_dir(rootfs, mp.destination))
                    if mp.type == "bind":
                        propagation = _propagation(mp, propagation)
                        if mp.idmap and remap is not None:
                            mp.source = self._hold(cid, mp.source, remap, f"bind mount {mp.source}")
                    out.append(mounts.to_oci(mp))
        except BaseException:
            self.unmount(record)
            raise
        return out, propagation

    @staticmethod
    def _copy_up(rootfs: str, mp: MountPoint, remap: IdMap | None) -> None:
        """Fill an empty volume from the image; a remapped rootfs shows host ids, which the volume
        stores as the container's (it is idmapped like the layers)."""
        if not copyup.copy_up(rootfs, mp.destination, mp.source) or remap is None:
            return
        try:
            shift_tree(mp.source, remap, back=True)
        except InvalidLayer as e:
            raise InvalidParameter(f"cannot fill volume {mp.name} from the image: {e}") from None

    def _hold(self, cid: str, source: str, remap: IdMap, what: str) -> str:
        """An idmapped copy of the mount of `source`, attached privately in a directory of the
        container's (reachable by its remapped root, unlike the volumes'): the runtime binds that.
        Goes when the container stops."""
        os.makedirs(self.idmapped_root, 0o711, exist_ok=True)
        top = os.path.join(self.idmapped_root, cid)
        os.makedirs(top, 0o710, exist_ok=True)
        os.chown(top, 0, remap.gid)
        staging = os.path.join(top, str(len(self.held.get(cid, []))))
        try:
            fd = fsmount.idmapped_tree(source, user_namespace(remap), recursive=True)
        except OSError as e:
            raise InvalidParameter(f"userns-remap: cannot idmap the {what}: {e.strerror} (its file system, or one "
                                   "mounted under it, does not support idmapped mounts)") from None
        try:
            if os.path.isdir(source):
                os.makedirs(staging, 0o700, exist_ok=True)
            else:  # a file bind
                os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            fsmount.move_mount_to(fd, staging)
            mount(None, staging, None, MS_PRIVATE)
        finally:
            os.close(fd)
        self.held.setdefault(cid, []).append(staging)
        return staging

    def _hold_subpath(self, cid: str, mp: MountPoint, remap: IdMap | None) -> str:
        """The subpath, opened safely (copyup.open_subpath) and bound through its fd onto a private
        staging directory (idmapped for a remapped container): the runtime binds that, the very
        directory that was checked — no path inside the volume is resolved twice. The staging
        mount goes when the container stops."""
        try:
            fd = copyup.open_subpath(mp.source, mp.subpath)
        except OSError as e:
            raise InvalidParameter(f"cannot access path {mp.subpath} in volume {mp.name}: "
                                   f"{(e.strerror or str(e)).lower()} (symlinks, '..' and other mounts are "
                                   "not followed)") from None
        try:
            if remap is not None:
                return self._hold(cid, f"/proc/self/fd/{fd}", remap, f"volume {mp.name}")
            staging = os.path.join(self.staging_root, cid, str(len(self.held.get(cid, []))))
            os.makedirs(staging, 0o700, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", staging, None, MS_BIND)
            mount(None, staging, None, MS_PRIVATE)
        finally:
            os.close(fd)
        self.held.setdefault(cid, []).append(staging)
        return staging

    def _drop_staging(self, cid: str) -> None:
        self.held.pop(cid, None)
        for top in (os.path.join(self.staging_root, cid), os.path.join(self.idmapped_root, cid)):
            if not os.path.isdir(top):
                continue
            for entry in os.listdir(top):
                path = os.path.join(top, entry)
                try:
                    while is_mount_point(path):
                        umount(path, MNT_DETACH)
                    (os.rmdir if os.path.isdir(path) else os.unlink)(path)
                except OSError as e:
                    log.warning("volume staging %s: %s", path, e)
            with contextlib.suppress(OSError):
                os.rmdir(top)

    def unmount(self, record: dict) -> None:
        """Never raises: it runs on the path that records a container's exit."""
        self._drop_staging(record["Id"])
        for mp in self.points(record):
            if mp.type == "volume":
                try:
                    if self.volumes.unmount(mp.name, record["Id"]):
                        self._event("unmount", mp.name, container=record["Id"])
                except (VolumeError, OSError, sqlite3.Error) as e:
                    log.warning("unmounting volume %s for %s: %s", mp.name, record["Id"][:12], e)

    def release(self, record: dict, remove_anonymous: bool) -> None:
        """A removed container's references; its anonymous volumes too when asked (and unused)."""
        self.unmount(record)
        self.volumes.release(record["Id"])
        if not remove_anonymous:
            return
        for mp in self.points(record):
            if mp.type != "volume":
                continue
            row = self.volumes.meta.get(mp.name)
            if row is not None and row.anonymous and not row.refs:
                with contextlib.suppress(VolumeError):
                    self.volumes.remove(mp.name)
                    self._event("destroy", mp.name)

    def reconcile(self, running: set[str], existing: set[str]) -> None:
        for top in (self.staging_root, self.idmapped_root):
            if os.path.isdir(top):
                for cid in os.listdir(top):
                    if cid not in running:
                        self._drop_staging(cid)
        with _errors():
            self.volumes.reconcile(running, existing)


def _list(value: object, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(f"invalid HostConfig.{what}: expected a list")
    return value


def _propagation(mp: MountPoint, current: str | None) -> str | None:
    """docker's rule: a shared bind needs a shared source and an rshared root; a slave one a shared
    or slave source and at least an rslave root."""
    kind = mp.propagation.lstrip("r")
    if kind not in ("shared", "slave"):
        return current
    where = mount_of(os.path.realpath(mp.source))
    if kind == "shared" and not where.shared:
        raise InvalidParameter(f"path {mp.source} is mounted on {where.mount_point} but it is not a shared mount")
    if kind == "slave" and not (where.shared or where.slave):
        raise InvalidParameter(f"path {mp.source} is mounted on {where.mount_point} but it is not a shared or "
                               "slave mount")
    return "rshared" if kind == "shared" or current == "rshared" else "rslave"
