"""The engine: containers over the image store, the storage driver and the supervisor.

A library first — caisd serves it over the Docker Engine API and the `cais` CLI can run it
in-process for one command. Every record change is saved atomically (store.py); container
processes belong to the supervisor (supervisor.py), so this object can come and go.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import signal as signals_mod
import socket
import threading
import time
from collections.abc import Callable

from cais.engine import containers, logs, namespaces, signals, spec
from cais.engine.errors import Conflict, EngineError, InvalidParameter, NotFound, NotModified, start_failure
from cais.engine.events import EventBus
from cais.engine.restart import next_delay, parse_policy, should_restart
from cais.engine.store import ContainerStore, read_json, write_json_atomic
from cais.engine.supervisor_client import SupervisorClient, SupervisorError
from cais.engine.userns import IdMap
from cais.runtime.cgroups.migration import MigrationPrimer

log = logging.getLogger("cais.engine")
REMOVED_KEPT = 4096  # exit codes of removed containers kept for waits that wake up late
INIT_CANDIDATES = ("/usr/bin/docker-init", "/usr/libexec/docker/docker-init", "/usr/bin/catatonit")


class Engine:
    def __init__(self, data_root: str, exec_root: str, *, storage_driver: str | None = None,
                 cgroup_parent: str = "/cais", init_path: str | None = None, network: dict | None = None,
                 remap: IdMap | None = None) -> None:
        """`network`: NetworkService options (bridge, dns, mtu); by default no default bridge network.
        `remap`: userns-remap's mapping (cais.engine.userns) for the containers created from now on
        (each keeps the one it was created with)."""
        self.data_root = data_root
        self.remap = remap
        self.exec_root = exec_root
        self.storage_driver_name = storage_driver
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.init_path = init_path or next((p for p in INIT_CANDIDATES if os.path.exists(p)), None)
        os.makedirs(data_root, mode=0o711, exist_ok=True)
        if remap is not None:
            os.chmod(data_root, 0o711)  # the remapped root walks through to its rootfs
        os.makedirs(exec_root, mode=0o700, exist_ok=True)
        self.runtime_root = os.path.join(exec_root, "runtime")
        self.store = ContainerStore(os.path.join(data_root, "containers"), remap.gid if remap else 0)
        self.events = EventBus()
        self.supervisor = SupervisorClient(exec_root)
        self.cgroup_primer = MigrationPrimer()  # cgroup v1: starts find the migration lock warm
        self.cond = threading.Condition(self.store.lock)
        self.generation: dict[str, int] = {}   # exits seen per container (wait next-exit)
        self.removed: dict[str, int] = {}      # exit codes of removed containers (wait removed)
        self.execs: dict[str, dict] = {}
        self.stopping: set[str] = set()
        self.starting: set[str] = set()        # between the supervisor's start and the record's Running
        self.early_exits: dict[str, tuple[int, str | None]] = {}  # exits that came in that window
        self.backoff: dict[str, float] = {}
        # told of every exit and removal (the API's waits), with whether it was a removal
        self.listeners: set[Callable[[bool], None]] = set()
        self._lock_fd: int | None = None
        self._cgroup_dirs: dict[str, str] | None = None  # per controller: where containers' cgroups are
        self._image_configs: dict[str, dict] = {}  # by image id (so never stale): read at create, used at start
        self._closed = threading.Event()
        self._images = None
        self._storage = None
        self._health = None
        self._volumes = None
        self._networks = None
        self.network_options = network or {}
        self.log_config = {"Type": "json-file", "Config": {}}  # the daemon's default (log-driver, log-opts)
        self.namespace_defaults = {"ipc": "private", "cgroupns": ""}  # default-ipc-mode, default-cgroupns-mode

    # ---- opening -------------------------------------------------------------------------
    def lock(self, wait: bool = False) -> None:
        """Take the data root: two engines never share one (caisd for its lifetime, the CLI for a command)."""
        fd = os.open(os.path.join(self.data_root, "engine.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise EngineError(f"the data root {self.data_root} is in use by another caisd") from None
        self._lock_fd = fd

    def open(self, *, watch: bool = True) -> Engine:
        self.supervisor.ensure_running()
        self.reconcile()
        self._finish_removals()
        records = self.store.all()
        self.volumes.reconcile({r["Id"] for r in records if r["State"]["Running"]}, {r["Id"] for r in records})
        self.networks.open(self.store.all())
        if watch:
            threading.Thread(target=self._watch, name="supervisor-watch", daemon=True).start()
        self._restart_on_boot()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._health is not None:
            self._health.stop_all()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def images(self):  # type: ignore[no-untyped-def]
        if self._images is None:
            from cais.engine.images import ImageService
            self._images = images = ImageService(self)
            try:  # --rm containers are recorded there without fsync: a crash may have lost their removal
                gone = images.store.forget_containers_except(lambda: set(self.store.records))
                if gone:
                    log.info("the image store forgot %d containers that no longer exist", len(gone))
            except Exception as e:  # checked again when the image store is next opened
                log.warning("could not match the image store's containers with the records: %s", e)
        return self._images

    @property
    def storage(self):  # type: ignore[no-untyped-def]
        if self._storage is None:
            from cais.engine.rootfs import RootfsService
            self._storage = RootfsService(self)
        return self._storage

    @property
    def volumes(self):  # type: ignore[no-untyped-def]
        if self._volumes is None:
            from cais.engine.volumes import VolumeService
            self._volumes = VolumeService(self)
        return self._volumes

    @property
    def networks(self):  # type: ignore[no-untyped-def]
        if self._networks is None:
            from cais.engine.networks import NetworkService
            self._networks = NetworkService(self, **self.network_options)
        return self._networks

    @property
    def health(self):  # type: ignore[no-untyped-def]
        if self._health is None:
            from cais.engine.health import HealthMonitor
            self._health = HealthMonitor(self)
        return self._health

    def reconcile(self) -> None:
        """Match records with what the supervisor runs; exits it saw while nobody listened are applied."""
        procs = self.supervisor.request({"op": "list"})["procs"]
        for record in self.store.all():
            cid = record["Id"]
            if not record["State"]["Running"]:
                continue
            if cid in procs and not procs[cid]["exited"]:
                if record["Config"].get("Healthcheck"):
                    self.health.watch(cid)
                continue
            exit_info = read_json(self._path(cid, "exit.json"))
            if exit_info is None:
                # its supervisor died with it still running: nobody holds its stdio or can reap it any
                # more, so it is stopped rather than left behind as an unaccounted-for process
                log.warning("container %s lost its supervisor; killing it", cid[:12])
                with contextlib.suppress(Exception):
                    self._signal(record, signals_mod.SIGKILL, all=True)
                exit_info = {"ExitCode": 137, "FinishedAt": logs.timestamp()}
                with self.store.lock:
                    record["State"]["Error"] = "the supervisor of this container died"
            self._on_exit(cid, int(exit_info.get("ExitCode", 255)), exit_info.get("FinishedAt"))

    def _finish_removals(self) -> None:
        """--rm containers whose removal a crash interrupted go now (as dockerd does at its start)."""
        for record in self.store.all():
            state = record["State"]
            if (record["HostConfig"].get("AutoRemove") and not state["Running"] and not state.get("Restarting")
                    and state["StartedAt"] != containers.ZERO_TIME):
                with contextlib.suppress(EngineError, OSError):
                    self.remove(record["Id"], force=True, volumes=True)

    def _restart_on_boot(self) -> None:
        for record in self.store.all():
            policy = record["HostConfig"].get("RestartPolicy") or {}
            state = record["State"]
            if state["Running"]:
                continue
            if policy.get("Name") in ("always", "unless-stopped") and not record.get("Cais", {}).get("ManuallyStopped"):
                with contextlib.suppress(EngineError, OSError):
                    self.start(record["Id"])
            if state.get("Restarting") and not state["Running"]:  # a policy's restart that a crash cut short
                with self.store.lock:
                    state.update({"Restarting": False, "Status": "exited"})
                    self.store.save(record)

    def _watch(self) -> None:
        """Exit notifications from the supervisor; reconnect (restarting it if needed) when it goes away."""
        while not self._closed.is_set():
            try:
                sock, _ = self.supervisor.stream({"op": "watch"})
                self.reconcile()
                with sock, sock.makefile("rb") as f:
                    for line in f:
                        event = json.loads(line)
                        try:
                            if event.get("exec_id"):
                                self._on_exec_exit(event["exec_id"], event["exit_code"])
                            else:
                                self._on_exit(event["id"], event["exit_code"], event.get("finished_at"))
                        except Exception:
                            log.exception("handling the exit of %s", event.get("id"))
                        if self.supervisor.mismatch:  # an outdated supervisor goes once it is idle
                            with contextlib.suppress(OSError, SupervisorError):
                                self.supervisor.ensure_running()
            except (OSError, SupervisorError, ValueError) as e:
                log.warning("supervisor connection lost: %s", e)
            if self._closed.wait(0.5):
                return
            with contextlib.suppress(OSError, SupervisorError):
                self.supervisor.ensure_running()

    # ---- helpers --------------------------------------------------------------------------
    def _path(self, cid: str, name: str) -> str:
        return os.path.join(self.store.dir(cid), name)

    def get(self, ref: str) -> dict:
        return self.store.get(ref)

    def _attrs(self, record: dict, **extra: object) -> dict:
        return {**(record["Config"].get("Labels") or {}), "image": record["Config"].get("Image") or record["Image"],
                "name": record["Name"].lstrip("/"), **extra}

    def _event(self, record: dict, action: str, **extra: object) -> None:
        self.events.emit("container", action, record["Id"], self._attrs(record, **extra))

    def _remap_for(self, host: dict) -> IdMap | None:
        return None if host.get("UsernsMode") == "host" else self.remap

    def _remember_image_config(self, image_id: str, config: dict) -> dict:
        if len(self._image_configs) >= 256:  # a daemon that saw many images: start over
            self._image_configs.clear()
        self._image_configs[image_id] = config
        return config

    def cgroups_path(self, cid: str) -> str:
        return f"{self.cgroup_parent}/{cid}"

    # ---- create / list / inspect ----------------------------------------------------------
    def create(self, body: dict, name: str | None = None) -> dict:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid container config")
        ref = body.get("Image")
        if not ref or not isinstance(ref, str):
            raise InvalidParameter("Config cannot be empty in order to create a container")
        if body.get("HostConfig") is None:
            body["HostConfig"] = {}
        if isinstance(body["HostConfig"], dict):
            body["HostConfig"]["LogConfig"] = logs.merge_log_config(body["HostConfig"].get("LogConfig"),
                                                                    self.log_config)
        self.cgroup_primer.prime(0.2)  # its start usually follows (docker run)
        image = self.images.resolve(ref)
        self._remember_image_config(image["Id"], image["Config"])
        with self.store.lock:
            taken = {r["Name"].lstrip("/") for r in self.store.records.values()}
            record = containers.new_record(body, name, image, taken, remapped=self.remap is not None,
                                           namespace_defaults=self.namespace_defaults)
            # a --rm container is not fsynced into being (a machine crash would remove it anyway), nor
            # saved before it is complete: its volatile layer and image reference are swept at the next start
            durable = not record["HostConfig"]["AutoRemove"]
            self.store.add(record, save=durable)
        cid = record["Id"]
        try:
            self.images.add_container(cid, image["Id"], durable=durable)
            record["Driver"] = self.storage.create(cid, image, self._remap_for(record["HostConfig"]),
                                                   volatile=record["HostConfig"]["AutoRemove"])
            record["GraphDriver"] = self.storage.graph_driver(cid)
            namespaces.resolve(record, self.get)
            self.networks.prepare(record, body)
            driver = record["HostConfig"]["LogConfig"].get("Type") or "json-file"
            record["LogPath"] = logs.log_file(self.store.dir(cid), cid, driver) if driver == "json-file" else ""
            points = self.volumes.prepare(cid, record["HostConfig"], body.get("Volumes"),
                                          image["Config"].get("Volumes"))
            record.setdefault("Cais", {})["MountPoints"] = points
            record["Mounts"] = [mp.record() for mp in self.volumes.points(record)]
            self.store.save(record, durable=durable)
        except BaseException:
            with contextlib.suppress(Exception):
                self.volumes.release(record, remove_anonymous=True)
            with contextlib.suppress(Exception):
                self.storage.remove(cid)
            self.images.remove_container(cid)
            self.store.remove(cid)
            raise
        self._event(record, "create")
        return {"Id": cid, "Warnings": []}

    def list(self, *, all: bool = False, filters: dict | None = None, limit: int | None = None) -> list[dict]:
        records = containers.list_filter(self.store.all(), filters or {}, all=all, limit=limit,
                                         resolve_image=lambda ref: self.images.try_id(ref))
        return [containers.summary(r) for r in records]

    def inspect(self, ref: str) -> dict:
        record = self.get(ref)
        out = containers.inspect(record)
        if (record.get("Cais") or {}).get("Links"):  # --link: by the containers' current names
            out["HostConfig"]["Links"] = self.networks.inspect_links(record)
        return out

    # ---- start / exit ---------------------------------------------------------------------
    def start(self, ref: str, *, by_policy: bool = False) -> bool:
        """Start a container; `by_policy` (a restart policy's restart, the container still Restarting)
        gives way to a stop or removal made meanwhile: False then."""
        with self.cgroup_primer.held():
            return self._start(ref, by_policy)

    def _start(self, ref: str, by_policy: bool) -> bool:
        record = self.get(ref)
        cid = record["Id"]
        state = record["State"]
        if state["Paused"]:
            raise Conflict("cannot start a paused container, try unpause instead")
        if state["Running"]:
            raise NotModified("container already started")
        if state["Status"] == "removing":
            raise Conflict(f"container {cid} is marked for removal and cannot be started")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(cid, "exit.json"))
        if self.remap is not None and self._remap_for(record["HostConfig"]) and self.storage.remap(cid) is None:
            raise Conflict(f"container {cid[:12]} was made before userns-remap was turned on and would run as "
                           "the host's root: remove and create it again, or create it with --userns=host")
        self._runtime_delete(cid)
        with self.store.lock:
            if by_policy and (not state.get("Restarting") or record.get("Cais", {}).get("ManuallyStopped")):
                return False
            self.starting.add(cid)  # a stop or removal from now on waits for the outcome
        try:
            rootfs = self.storage.mount(cid)  # in here: a rootfs that cannot mount releases the waiters too
            image_config = self._image_configs.get(record["Image"])
            if image_config is None:
                image_config = self._remember_image_config(record["Image"], self.images.config_of(record["Image"]))
            link_env = self.networks.link_env(record)
            mounts, propagation = self.volumes.mount(record, rootfs)
            # a namespace of its own is made by the runtime and plugged between create and start
            late_network = self.networks.sandboxed(record) and self.supervisor.protocol >= 2
            netns_path = None if late_network else self.networks.setup(record)
            remap = self.storage.remap(cid)
            if remap is not None:  # root in the container may edit them, as with docker
                for name in ("hostname", "hosts", "resolv.conf"):
                    with contextlib.suppress(FileNotFoundError):
                        os.chown(self._path(cid, name), remap.uid, remap.gid)
            oci = spec.build(record, image_config, rootfs, self.store.dir(cid),
                             cgroups_path=self.cgroups_path(cid), init_path=self.init_path, mounts=mounts,
                             remap=remap, link_env=link_env)
            namespaces.apply(oci, record, self.get, self.store.dir(cid))
            self.networks.apply_spec(oci, netns_path)
            if propagation:  # shared or slave binds need the rootfs to propagate too (as docker)
                oci["linux"]["rootfsPropagation"] = propagation
            bundle = self.store.dir(cid)
            write_json_atomic(os.path.join(bundle, "config.json"), oci, durable=False)  # rewritten at each start
            settings = logs.log_settings(record["HostConfig"].get("LogConfig"))
            if settings:
                settings["attrs"] = logs.log_attrs(record)
            self.supervisor.check_log(settings)
            config = record["Config"]
            request = {
                "op": "start", "id": cid, "bundle": bundle, "root": self.runtime_root, "tty": config["Tty"],
                "stdin": config["OpenStdin"], "log": settings, "log_path": self._log_file(record),
                "exit_file": self._path(cid, "exit.json")}
            reply = self._create_then_start(record, request) if late_network else self.supervisor.request(request)
        except SupervisorError as e:  # the runtime's words, read as dockerd reads runc's
            self._not_starting(cid)
            code, error = start_failure(record["Path"], str(e))
            self._start_failed(record, str(error), code)
            raise error from None
        except EngineError as e:
            self._not_starting(cid)
            self._start_failed(record, str(e))
            raise
        except Exception as e:
            self._not_starting(cid)
            self._start_failed(record, str(e))
            raise EngineError(f"failed to create task for container: {e}") from e
        with self.store.lock:
            early_exit = self._not_starting(cid)
            if not by_policy:
                record.setdefault("Cais", {})["ManuallyStopped"] = False
            state.update({"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                          "OOMKilled": False, "Dead": False, "Pid": int(reply["pid"]), "ExitCode": 0, "Error": "",
                          "StartedAt": logs.timestamp()})
            record.setdefault("Cais", {})["StartedMono"] = time.time()
            # after a machine crash nothing runs: only a policy that restarts it at boot needs this on disk
            policy = (record["HostConfig"].get("RestartPolicy") or {}).get("Name")
            self.store.save(record, durable=policy in ("always", "unless-stopped"))
            self.cond.notify_all()
        self._event(record, "start")
        if early_exit is not None:  # it exited before it was recorded running (`true` under load)
            self._on_exit(cid, *early_exit)
        elif record["Config"].get("Healthcheck"):
            self.health.watch(cid)
        return True

    def _create_then_start(self, record: dict, request: dict) -> dict:
        """Create, plug the network into the namespace the runtime made, start: one supervisor
        connection, whose end before `start` makes the supervisor delete the created container."""
        sock, reply = self.supervisor.stream({**request, "op": "create"})
        with sock:
            self.networks.setup(record, source=f"/proc/{int(reply['pid'])}/ns/net")
            self.supervisor.send(sock, {"op": "start"})
        return reply

    def _changed(self, removal: bool = False) -> None:
        """Under self.cond, after an exit or a removal: wake the waits."""
        self.cond.notify_all()
        for listener in list(self.listeners):
            try:
                listener(removal)
            except Exception:  # a listener never costs an exit its bookkeeping
                log.exception("a wait listener failed")

    def _not_starting(self, cid: str) -> tuple[int, str | None] | None:
        with self.store.lock:
            self.starting.discard(cid)
            return self.early_exits.pop(cid, None)

    def _start_failed(self, record: dict, error: str, code: int = 128) -> None:
        """Like dockerd: the error and exit code recorded (FinishedAt kept), waiters released."""
        cid = record["Id"]
        self._runtime_delete(cid)
        with contextlib.suppress(Exception):
            self.storage.unmount(cid)
        self.volumes.unmount(record)
        self.networks.teardown(record)
        namespaces.release(record, self.store.dir(cid))
        with self.cond:
            record["State"].update({"ExitCode": code, "Error": error})
            if record["State"]["Status"] == "created":
                record["State"]["Status"] = "exited" if record["State"]["StartedAt"] != containers.ZERO_TIME \
                    else "created"
            self.store.save(record)
            self.generation[cid] = self.generation.get(cid, 0) + 1
            self._changed()
        if record["HostConfig"].get("AutoRemove"):  # docker: --rm removes a container that cannot start
            self._autoremove(cid)

    def _runtime_delete(self, cid: str) -> None:
        if not os.path.isdir(os.path.join(self.runtime_root, cid)):  # never created, or deleted already (--root/ID)
            return
        from cais import runtime
        with contextlib.suppress(Exception):
            runtime.delete(cid, root=self.runtime_root, force=True)

    def _oom_killed(self, cid: str) -> bool:
        """Read in the container's memory cgroup; where the hierarchies are mounted is looked up (in
        mountinfo) at the first exit only: the cgroups of containers are siblings under cgroup_parent."""
        try:
            from cais.runtime.cgroups import load_manager, open_manager
            if self._cgroup_dirs is None:
                paths = open_manager(self.cgroups_path(cid), cid).paths
                self._cgroup_dirs = {k: os.path.dirname(v) for k, v in paths.items()}
            return load_manager({k: os.path.join(v, cid) for k, v in self._cgroup_dirs.items()}).oom_kills() > 0
        except Exception:
            return False

    def _on_exit(self, cid: str, exit_code: int, finished_at: str | None = None) -> None:
        try:
            record = self.get(cid)
        except NotFound:
            return
        with self.store.lock:
            if cid in self.starting:  # start() has not recorded it running yet: it applies the exit
                self.early_exits[cid] = (exit_code, finished_at)
                return
        if record["Id"] != cid or not record["State"]["Running"]:
            return
        oom = self._oom_killed(cid)
        # cleanup failures are logged, never allowed to lose the exit itself (waiters depend on it)
        for step in (lambda: self._runtime_delete(cid), lambda: self.storage.unmount(cid),
                     lambda: self.volumes.unmount(record), lambda: self.networks.teardown(record),
                     lambda: namespaces.release(record, self.store.dir(cid)),
                     lambda: self._health.unwatch(cid) if self._health is not None else None):
            try:
                step()
            except Exception:
                log.exception("cleaning up after the exit of %s", cid[:12])
        ran_for = time.time() - record.get("Cais", {}).get("StartedMono", 0)
        with self.cond:  # one critical section: a concurrent stop sees either running or the final decision
            state = record["State"]
            state.update({"Status": "exited", "Running": False, "Paused": False, "Pid": 0, "ExitCode": exit_code,
                          "OOMKilled": oom, "FinishedAt": finished_at or logs.timestamp()})
            manual = cid in self.stopping or record.get("Cais", {}).get("ManuallyStopped", False)
            auto_remove = record["HostConfig"].get("AutoRemove") and cid not in self.stopping
            restart = not auto_remove and not manual and should_restart(
                record["HostConfig"].get("RestartPolicy") or {}, exit_code, record["RestartCount"], manual)
            if restart:
                state["Restarting"] = True
                state["Status"] = "restarting"
            if auto_remove:  # at once: a start or a removal made meanwhile is refused, as dockerd's
                state["Status"] = "removing"
            else:
                self.store.save(record)
            self.generation[cid] = self.generation.get(cid, 0) + 1
            self._changed()
        if oom:
            self._event(record, "oom")
        self._event(record, "die", exitCode=exit_code)
        if auto_remove:  # here and now: nothing of it runs or waits any more (a wait for `removed` is answered soonest)
            try:
                self._destroy(record, volumes=True)
            except Exception as e:  # its exit stays recorded; `docker rm` may try again
                log.warning("removing %s after its exit: %s", cid[:12], e)
                with self.store.lock:
                    if record["State"]["Status"] == "removing":
                        record["State"].update({"Status": "dead", "Dead": True})
        elif restart:
            delay = next_delay(self.backoff.get(cid, 0), ran_for)
            self.backoff[cid] = delay
            timer = threading.Timer(delay, self._policy_restart, args=(cid,))
            timer.daemon = True
            timer.start()

    def _autoremove(self, cid: str) -> None:
        with contextlib.suppress(EngineError):
            self.remove(cid, force=True, volumes=True)

    def _policy_restart(self, cid: str) -> None:
        try:
            record = self.get(cid)
        except NotFound:
            return
        if not record["State"].get("Restarting") or self._closed.is_set():
            return
        with self.cond:
            if not record["State"].get("Restarting") or record.get("Cais", {}).get("ManuallyStopped"):
                return
            # Restarting until start() records it running: never seen exited (by `wait`, `rm`, `stop`) meanwhile
            record["RestartCount"] += 1
            self.store.save(record)
        try:
            if self.start(cid, by_policy=True):
                self._event(record, "restart")
        except EngineError as e:
            log.warning("restarting %s failed: %s", cid[:12], e)
            with self.cond:
                record["State"].update({"Restarting": False, "Status": "exited", "Error": str(e)})
                self.store.save(record)
                self._changed()

    # ---- stop / kill / restart / pause ----------------------------------------------------
    def kill(self, ref: str, signal: str | int | None = None) -> None:
        record = self.get(ref)
        sig = signals.parse(signal, signals_mod.SIGKILL)
        if not record["State"]["Running"]:
            raise Conflict(f"Container {record['Id']} is not running")
        with self.store.lock:  # like docker: a killed container is not restarted by its policy
            record.setdefault("Cais", {})["ManuallyStopped"] = True
            self.store.save(record)
        self._signal(record, sig)
        self._event(record, "kill", signal=sig)

    def _signal(self, record: dict, sig: int, all: bool = False) -> None:
        from cais import runtime
        from cais.runtime.errors import ContainerNotFound
        try:
            runtime.kill(record["Id"], sig, root=self.runtime_root, all=all)
        except Exception as e:
            pid = record["State"].get("Pid")
            if not pid and isinstance(e, ContainerNotFound):
                return  # as dockerd: gone between the check and the signal, its exit is being recorded
            if not pid:
                raise EngineError(f"cannot kill container {record['Id']}: {e}") from e
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _wait_exit(self, cid: str, generation: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.generation.get(cid, 0) == generation and cid in self.store.records \
                    and self.store.records[cid]["State"]["Running"]:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 3600.0) if remaining is not None else 1.0)  # huge t: no overflow
        return True

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        record = self.get(ref)
        cid = record["Id"]
        with self.cond:
            record.setdefault("Cais", {})["ManuallyStopped"] = True
            while cid in self.starting:  # a start under way (a policy's restart): stop what it starts
                self.cond.wait(1.0)
            if record["State"].get("Restarting"):
                record["State"].update({"Restarting": False, "Status": "exited"})
                self.store.save(record)
                return
            self.store.save(record)
            if not record["State"]["Running"]:
                raise NotModified("container already stopped")
        config = record["Config"]
        sig = signals.parse(signal or config.get("StopSignal"), signals_mod.SIGTERM)
        if timeout is None:
            timeout = config.get("StopTimeout") if config.get("StopTimeout") is not None else 10
        with self.store.lock:
            generation = self.generation.get(cid, 0)
        self.stopping.add(cid)
        try:
            if record["State"]["Paused"]:
                self.unpause(cid)
            with contextlib.suppress(EngineError):
                self._signal(record, sig)
            if timeout < 0 or not self._wait_exit(cid, generation, float(timeout)):
                if timeout >= 0:
                    with contextlib.suppress(EngineError):
                        self._signal(record, signals_mod.SIGKILL, all=True)
                if not self._wait_exit(cid, generation, 30):
                    raise EngineError(f"container {cid[:12]} did not exit after SIGKILL")
        finally:
            self.stopping.discard(cid)
        self._event(record, "stop")
        if record["HostConfig"].get("AutoRemove"):
            self._autoremove(cid)

    def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        record = self.get(ref)
        with contextlib.suppress(NotModified):
            self.stop(record["Id"], timeout, signal)
        self.start(record["Id"])
        self._event(record, "restart")

    def pause(self, ref: str) -> None:
        from cais import runtime
        record = self.get(ref)
        if not record["State"]["Running"]:
            raise Conflict(f"Container {record['Id']} is not running")
        if record["State"]["Paused"]:
            raise Conflict(f"Container {record['Id']} is already paused")
        runtime.pause(record["Id"], root=self.runtime_root)
        with self.store.lock:
            record["State"].update({"Paused": True, "Status": "paused"})
            self.store.save(record)
        self._event(record, "pause")

    def unpause(self, ref: str) -> None:
        from cais import runtime
        record = self.get(ref)
        if not record["State"]["Paused"]:
            raise Conflict(f"Container {record['Id']} is not paused")
        runtime.resume(record["Id"], root=self.runtime_root)
        with self.store.lock:
            record["State"].update({"Paused": False, "Status": "running"})
            self.store.save(record)
        self._event(record, "unpause")

    # ---- wait / remove / rename / update --------------------------------------------------
    def wait_token(self, ref: str, condition: str = "not-running") -> tuple[str, int]:
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        record = self.get(ref)
        with self.cond:
            return record["Id"], self.generation.get(record["Id"], 0)

    def wait(self, cid: str, token: int, condition: str = "not-running", timeout: float | None = None) -> dict | None:
        """{"StatusCode": …} once `condition` holds, None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                result = self._waited(cid, token, condition)
                if result is not None:
                    return result
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self.cond.wait(min(remaining, 1.0) if remaining is not None else 1.0)

    def wait_now(self, cid: str, token: int, condition: str = "not-running") -> tuple[bool, dict | None]:
        """`wait` without blocking, for an event loop: (True, its answer or None) — or (False, None)
        if another thread holds the records' lock (perhaps while it fsyncs): ask `wait` in a thread."""
        if not self.cond.acquire(blocking=False):
            return False, None
        try:
            return True, self._waited(cid, token, condition)
        finally:
            self.cond.release()

    def _waited(self, cid: str, token: int, condition: str) -> dict | None:
        """Under self.cond: the answer of a wait for `condition`, if it holds."""
        record = self.store.records.get(cid)
        if record is None:
            return {"StatusCode": self.removed.get(cid, 0), "Error": None}
        state = record["State"]
        if condition == "next-exit" and self.generation.get(cid, 0) != token:
            return {"StatusCode": state["ExitCode"], "Error": None}
        if condition in ("not-running", "") and not state["Running"] and not state.get("Restarting"):
            return {"StatusCode": state["ExitCode"], "Error": None}
        return None

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        record = self.get(ref)
        cid = record["Id"]
        with self.cond:
            while cid in self.starting:  # never removed under a start (a policy's restart) under way
                self.cond.wait(1.0)
        if record["State"]["Running"] or record["State"].get("Restarting"):
            if not force:
                raise Conflict(f"cannot remove container \"{record['Name']}\": container is running: stop the "
                               "container before removing or force remove")
            with self.store.lock:
                record["State"]["Restarting"] = False
                generation = self.generation.get(cid, 0)
            self.stopping.add(cid)
            try:
                if record["State"]["Running"]:
                    if record["State"]["Paused"]:
                        with contextlib.suppress(Exception):
                            self.unpause(cid)
                    with contextlib.suppress(EngineError):
                        self._signal(record, signals_mod.SIGKILL, all=True)
                    if not self._wait_exit(cid, generation, 30):
                        raise EngineError(f"could not kill container {cid[:12]}")
            finally:
                self.stopping.discard(cid)
        with self.store.lock:
            if cid not in self.store.records:
                return
            if record["State"]["Status"] == "removing":
                raise Conflict(f"removal of container {cid[:12]} is already in progress")
            record["State"]["Status"] = "removing"
        self._runtime_delete(cid)
        namespaces.release(record, self.store.dir(cid))
        self._destroy(record, volumes)

    def _destroy(self, record: dict, volumes: bool) -> None:
        """The removal proper of a container marked "removing", whose processes and namespaces are gone:
        it never waits (the exit of a --rm container runs it in the thread that reports exits)."""
        cid = record["Id"]
        try:
            self.storage.remove(cid)
        except Exception as e:
            with self.store.lock:
                record["State"]["Status"] = "dead"
                record["State"]["Dead"] = True
                self.store.save(record)
            raise EngineError(f"unable to remove filesystem for {cid}: {e}") from e
        self.images.remove_container(cid, durable=not record["HostConfig"].get("AutoRemove"))
        self.volumes.release(record, remove_anonymous=volumes)
        for exec_id in [k for k, v in self.execs.items() if v["ContainerID"] == cid]:
            self.execs.pop(exec_id, None)
        with self.cond:
            self.removed[cid] = record["State"]["ExitCode"]
            if len(self.removed) > REMOVED_KEPT:  # the oldest: its waits were answered long ago
                del self.removed[next(iter(self.removed))]
            self.generation.pop(cid, None)
            self.backoff.pop(cid, None)
            self.store.remove(cid)
            self._changed(removal=True)
        self._event(record, "destroy")

    def prune(self, filters: dict | None = None) -> dict:
        deleted, reclaimed = [], 0
        for record in self.store.all():
            if record["State"]["Running"] or record["State"].get("Restarting"):
                continue
            if not containers.all_labels_match(record["Config"].get("Labels") or {}, (filters or {}).get("label", [])):
                continue
            with contextlib.suppress(EngineError):
                reclaimed += self.storage.size(record["Id"])
                self.remove(record["Id"])
                deleted.append(record["Id"])
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def rename(self, ref: str, new_name: str) -> None:
        from cais.engine.names import NAME
        record = self.get(ref)
        if not new_name or not NAME.match(new_name):
            raise InvalidParameter(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self.store.lock:
            other = self.store.by_name(new_name)
            if other is not None and other["Id"] != record["Id"]:
                raise Conflict(f'Conflict. The container name "/{new_name.lstrip("/")}" is already in use by '
                               f'container "{other["Id"]}". You have to remove (or rename) that container to be '
                               "able to reuse that name.")
            old = record["Name"]
            record["Name"] = "/" + new_name.lstrip("/")
            self.store.save(record)
        self._event(record, "rename", oldName=old)

    def update(self, ref: str, body: dict) -> dict:
        from cais import runtime
        record = self.get(ref)
        keys = {"Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
                "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight", "KernelMemory"}
        changes = {k: v for k, v in body.items() if k in keys}
        host = {**record["HostConfig"], **changes}
        spec.validate_resources(host)
        if "RestartPolicy" in body and body["RestartPolicy"] is not None:
            policy = parse_policy(body["RestartPolicy"])
            if record["HostConfig"].get("AutoRemove") and policy["Name"] not in ("", "no"):
                raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the "
                                       "container")
            host["RestartPolicy"] = policy
        if record["State"]["Running"] and changes:
            from cais.runtime.cgroups import resources as cgroup_resources
            from cais.runtime.cgroups.errors import CgroupError
            resources = spec.resources(host)
            try:  # values out of range are the client's: 400 (the kernel refusing one stays docker's 500)
                cgroup_resources.validate(resources)
            except CgroupError as e:
                raise InvalidParameter(str(e)) from None
            try:
                runtime.update(record["Id"], resources, root=self.runtime_root)
            except Exception as e:
                raise EngineError(f"Cannot update container {record['Id']}: {e}") from e
        with self.store.lock:
            record["HostConfig"] = host
            self.store.save(record)
        self._event(record, "update")
        return {"Warnings": []}

    # ---- top / stats / logs / changes -------------------------------------------------------
    def pids(self, record: dict) -> list[int]:
        from cais import runtime
        try:
            return [int(p) for p in runtime.ps(record["Id"], root=self.runtime_root)]
        except Exception:
            return [record["State"]["Pid"]] if record["State"]["Pid"] else []

    def top(self, ref: str, ps_args: str | None = None) -> dict:
        import subprocess
        record = self.get(ref)
        if not record["State"]["Running"]:
            raise Conflict(f"Container {record['Id']} is not running")
        pids = set(self.pids(record))
        if ps_args and "\0" in ps_args:
            raise InvalidParameter("ps: invalid argument: NUL in ps_args")
        args = (ps_args or "-ef").split()
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise InvalidParameter(f"ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        if not lines:
            return {"Titles": [], "Processes": []}
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        col = titles.index("PID")
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    def stats(self, ref: str, previous: dict | None = None) -> dict:
        from cais.engine.stats import collect
        return collect(self, self.get(ref), previous)

    def _log_file(self, record: dict) -> str:
        """The file the container's log driver writes ("" for `none`); LogPath names json-file's only."""
        driver = (record["HostConfig"].get("LogConfig") or {}).get("Type") or "json-file"
        return logs.log_file(self.store.dir(record["Id"]), record["Id"], driver)

    def logs(self, ref: str, *, follow: bool = False, stdout: bool = True, stderr: bool = True,
             since: int | None = None, until: int | None = None, tail: int | None = None,
             details: bool = False, batches: bool = False):  # type: ignore[no-untyped-def]
        """(stream, unix ns, bytes) entries, or lists of them with `batches`; since/until in unix ns."""
        record = self.get(ref)
        driver = (record["HostConfig"].get("LogConfig") or {}).get("Type") or "json-file"
        if driver == "none":
            raise InvalidParameter('configured logging driver does not support reading')
        cid = record["Id"]

        def running() -> bool:
            r = self.store.records.get(cid)
            return bool(r and (r["State"]["Running"] or r["State"].get("Restarting")))
        return (logs.read_batches if batches else logs.read)(self._log_file(record), driver, stdout=stdout, stderr=stderr, since=since, until=until,
                         tail=tail, follow=follow, running=running, with_details=details)

    def changes(self, ref: str) -> list[dict]:
        record = self.get(ref)
        return self.storage.changes(record["Id"])

    def export(self, ref: str):  # type: ignore[no-untyped-def]
        from cais.engine.archive import export_rootfs
        record = self.get(ref)
        return export_rootfs(self, record)

    # ---- attach / exec ----------------------------------------------------------------------
    def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool) -> tuple[dict, socket.socket]:
        record = self.get(ref)
        if record["State"]["Status"] in ("removing", "dead"):
            raise Conflict(f"container {record['Id']} is being removed")
        sock, _ = self.supervisor.stream({"op": "attach", "id": record["Id"], "stdin": stdin,
                                          "stdout": stdout, "stderr": stderr})
        self._event(record, "attach")
        return record, sock

    def resize(self, ref: str, height: int, width: int, exec_id: str | None = None) -> None:
        record = self.get(ref)
        if not record["State"]["Running"]:
            raise Conflict(f"Container {record['Id']} is not running")
        with contextlib.suppress(SupervisorError):
            self.supervisor.request({"op": "resize", "id": record["Id"], "exec_id": exec_id,
                                     "height": height, "width": width})

    def exec_create(self, ref: str, body: dict) -> dict:
        from cais.engine.names import new_id
        record = self.get(ref)
        if not record["State"]["Running"]:
            raise Conflict(f"container {record['Id']} is not running")
        if record["State"]["Paused"]:
            raise Conflict(f"container {record['Id']} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
            raise InvalidParameter("No exec command specified")
        exec_id = new_id()
        self.execs[exec_id] = {
            "ID": exec_id, "Running": False, "ExitCode": None, "ProcessConfig": {
                "tty": bool(body.get("Tty")), "entrypoint": cmd[0], "arguments": cmd[1:],
                "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
            "OpenStdin": bool(body.get("AttachStdin")), "OpenStderr": bool(body.get("AttachStderr")),
            "OpenStdout": bool(body.get("AttachStdout")), "CanRemove": False, "ContainerID": record["Id"],
            "DetachKeys": body.get("DetachKeys") or "", "Pid": 0,
            "Cais": {"Cmd": cmd, "Env": body.get("Env") or [], "User": body.get("User") or "",
                     "WorkingDir": body.get("WorkingDir") or "", "Tty": bool(body.get("Tty")),
                     "Privileged": bool(body.get("Privileged"))},
        }
        self._event(record, f"exec_create: {' '.join(cmd)}", execID=exec_id)
        return {"Id": exec_id}

    def exec_inspect(self, exec_id: str) -> dict:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return {k: v for k, v in ex.items() if k != "Cais"}

    def exec_check(self, exec_id: str) -> tuple[dict, dict]:
        """The exec and its container, if the exec can start now."""
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        if ex["Running"] or ex["ExitCode"] is not None:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        record = self.get(ex["ContainerID"])
        if not record["State"]["Running"]:
            raise Conflict(f"container {record['Id']} is not running")
        return ex, record

    def exec_start(self, exec_id: str, *, detach: bool = False) -> tuple[dict, socket.socket]:
        ex, record = self.exec_check(exec_id)
        cfg = ex["Cais"]
        rootfs = self.storage.rootfs_path(record["Id"])
        base = (read_json(os.path.join(self.store.dir(record["Id"]), "config.json")) or {}).get("process", {})
        process = spec.exec_process(record, base, cfg, rootfs)
        ex["Running"] = True
        try:
            sock, reply = self.supervisor.stream({
                "op": "exec", "id": record["Id"], "exec_id": exec_id, "root": self.runtime_root,
                "process": process, "tty": cfg["Tty"], "stdin": ex["OpenStdin"] and not detach})
        except SupervisorError as e:
            ex["Running"] = False
            ex["ExitCode"] = 126
            raise EngineError(f"OCI runtime exec failed: {e}") from e
        ex["Pid"] = reply.get("pid", 0)
        self._event(record, f"exec_start: {' '.join(cfg['Cmd'])}", execID=exec_id)
        return ex, sock

    def _on_exec_exit(self, exec_id: str, exit_code: int) -> None:
        ex = self.execs.get(exec_id)
        with self.cond:
            if ex is None or ex["ExitCode"] is not None:  # the stream and the watch both report it: once
                return
            ex["Running"] = False
            ex["ExitCode"] = exit_code
            ex["Pid"] = 0
            self._changed()
        with contextlib.suppress(NotFound):
            self._event(self.get(ex["ContainerID"]), "exec_die", execID=exec_id, exitCode=exit_code)

    def exec_finished(self, exec_id: str, exit_code: int) -> None:
        """The stream carried the exit code before the watch connection did: record it now."""
        self._on_exec_exit(exec_id, exit_code)

    # ---- system -----------------------------------------------------------------------------
    def disk_usage(self) -> dict:
        usage = self.images.disk_usage()
        usage["Containers"] = [{**containers.summary(r), "SizeRw": self.storage.size(r["Id"]), "SizeRootFs": 0}
                               for r in self.store.all()]
        usage["Volumes"] = self.volumes.disk_usage()
        usage.setdefault("BuildCache", [])
        return usage

    def counts(self) -> dict:
        records = self.store.all()
        running = sum(1 for r in records if r["State"]["Running"] and not r["State"]["Paused"])
        paused = sum(1 for r in records if r["State"]["Paused"])
        return {"Containers": len(records), "ContainersRunning": running, "ContainersPaused": paused,
                "ContainersStopped": len(records) - running - paused}




def host_info() -> dict:
    uname = platform.uname()
    return {"KernelVersion": uname.release, "OperatingSystem": _os_name(), "OSType": "linux",
            "Architecture": uname.machine, "NCPU": os.cpu_count() or 1,
            "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "Name": socket.gethostname()}


def _os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "Linux"

