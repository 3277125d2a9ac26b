"""cgroup v1: one directory per mounted hierarchy (cpu, memory, pids, …), as runc's fs driver."""

from __future__ import annotations

import os
import time

from cais.runtime.cgroups import devices, fs
from cais.runtime.cgroups.errors import CgroupError
from cais.runtime.cgroups.manager import Manager
from cais.runtime.cgroups.migration import migrate_self, own_procs_v1
from cais.runtime.cgroups.paths import Mount, cgroup_mounts, own_cgroups, under_mount
from cais.runtime.cgroups.resources import validate
from cais.runtime.errors import suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from collections.abc import Callable

    from cais.runtime.cgroups.resources import Resources
    from cais.runtime.cgroups.stats import BlkioEntry, MemoryEntry, Stats

_OWN_PROCS: list[str | None] = []  # the caller's own cgroup.procs in one v1 hierarchy, once found


def _own_procs() -> str | None:
    if not _OWN_PROCS:
        _OWN_PROCS.append(own_procs_v1())
    return _OWN_PROCS[0]


# cpuacct.stat counts in USER_HZ ticks
_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class V1Manager(Manager):
    version = 1

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths
        self._created: list[str] = []

    @classmethod
    def for_path(cls, inner: str, mounts: list[Mount] | None = None) -> V1Manager:
        """Place ``inner`` in every mounted v1 hierarchy (absolute: from its root; relative: from
        the caller's own cgroup in that hierarchy, as runc's GetOwnCgroupPath)."""
        own = own_cgroups() if not inner.startswith("/") else {}
        paths: dict[str, str] = {}
        for mount in cgroup_mounts() if mounts is None else mounts:
            if mount.fstype != "cgroup" or not mount.subsystems or mount.subsystems[0] in paths:
                continue
            if inner.startswith("/"):
                base = mount.mountpoint
            else:
                mine = own.get(mount.subsystems[0])
                if mine is None:
                    continue
                base = under_mount(mount, mine)
            for subsystem in mount.subsystems:
                paths[subsystem] = os.path.join(base, inner.lstrip("/"))
        if not paths:
            raise CgroupError("no cgroup v1 hierarchy is mounted")
        return cls(paths)

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def _path(self, subsystem: str, field: str | None = None) -> str | None:
        path = self._paths.get(subsystem)
        if path is None and field is not None:
            raise CgroupError(f"linux.resources.{field}: the {subsystem} cgroup controller is not mounted")
        return path

    # --- lifecycle -------------------------------------------------------------------------

    def create(self, resources: Resources | None = None) -> None:
        resources = validate(resources)
        self._check_controllers(resources)
        try:
            for subsystem, path in sorted(self._paths.items()):
                if subsystem == "cpuset":
                    self._created += _make_cpuset(path)
                else:
                    self._created += fs.makedirs(path)
            for path in set(self._paths.values()) - set(self._created):  # ours are new, hence empty
                if fs.procs(path):
                    raise CgroupError(f"cgroup {path} already has processes in it")
            self._set(resources)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        for d in reversed(self._created):
            with suppress(CgroupError):
                fs.remove(d)
        self._created = []

    def update(self, resources: Resources) -> None:
        resources = validate(resources)
        self._check_controllers(resources)
        self._set(resources)

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self._paths.values())

    def add(self, pid: int) -> None:
        for path in sorted(set(self._paths.values())):
            fs.write_proc(path, pid)

    def warm_migration(self) -> Callable[[], None]:
        """Start paying, in a thread, the wait of the next migration (add); return its join.

        A migration takes the kernel's cgroup_threadgroup_rwsem for writing, and the first one
        after a quiet spell waits an RCU grace period for it (~6-10 ms here; the next ones while
        it lasts, ~0.1 ms). Writing the caller into the cgroup it is already in changes nothing
        but takes that lock, so a long-lived caller (the engine's zygote path, whose init cannot
        be cloned inside as a bootstrap is) starts the wait while it prepares the init. Call it
        after create(): the wait holds cgroup_mutex, which every mkdir needs too (see
        migration.py, which also keeps the lock warm across a whole start).
        """
        import threading

        own = _own_procs()
        if own is None:
            return lambda: None
        thread = threading.Thread(target=migrate_self, args=(own,), daemon=True)
        thread.start()
        return thread.join

    def delegate(self, uid: int, gid: int) -> None:
        """Nothing: v1 has no safe delegation (a chowned v1 cgroup lets its owner raise its own
        limits), so, like runc, cais leaves v1 cgroups to root."""

    def pids(self) -> list[int]:
        for subsystem in ("pids", "freezer", "devices", "memory", "cpu"):
            path = self._paths.get(subsystem)
            if path and os.path.isdir(path):
                return fs.procs(path)
        path = next(iter(self._paths.values()))
        return fs.procs(path) if os.path.isdir(path) else []

    # --- freezer ---------------------------------------------------------------------------

    def freeze(self) -> None:
        path = self._path("freezer")
        if path is None:
            raise CgroupError("cannot freeze: the freezer cgroup controller is not mounted")
        # A v1 freezer can stay FREEZING while processes fork; like runc, write FROZEN again,
        # and now and then thaw briefly to let a forking process finish.
        for i in range(400):
            if i % 50 == 49:
                fs.write(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            fs.write(path, "freezer.state", "FROZEN")
            state = fs.read(path, "freezer.state")
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise CgroupError(f"unexpected freezer state {state} while freezing {path}")
            time.sleep(0.001 if i < 100 else 0.005)
        fs.write(path, "freezer.state", "THAWED")
        raise CgroupError(f"cannot freeze {path}: processes stayed in FREEZING")

    def thaw(self) -> None:
        path = self._path("freezer")
        if path is None:
            raise CgroupError("cannot thaw: the freezer cgroup controller is not mounted")
        fs.write(path, "freezer.state", "THAWED")

    def frozen(self) -> bool:
        path = self._path("freezer")
        return path is not None and fs.read_optional(path, "freezer.state") == "FROZEN"

    # --- resources -------------------------------------------------------------------------

    def _check_controllers(self, r: Resources) -> None:
        wanted = {
            "memory": "memory",
            "pids": "pids",
            "blockIO": "blkio",
            "hugepageLimits": "hugetlb",
            "rdma": "rdma",
            "devices": "devices",
        }
        for key, subsystem in wanted.items():
            if r.get(key) and _anything_set(r[key]):
                self._path(subsystem, key)
        cpu = r.get("cpu") or {}
        if cpu.get("cpus") or cpu.get("mems"):
            self._path("cpuset", "cpu.cpus")
        if _anything_set({k: v for k, v in cpu.items() if k not in ("cpus", "mems")}):
            self._path("cpu", "cpu")
        network = r.get("network") or {}
        if network.get("classID") is not None:
            self._path("net_cls", "network.classID")
        if network.get("priorities"):
            self._path("net_prio", "network.priorities")
        if r.get("unified"):
            raise CgroupError(
                "linux.resources.unified: only cgroup v2 has unified resources; this host uses cgroup v1"
            )

    def _set(self, r: Resources) -> None:
        cpu = r.get("cpu") or {}
        if cpu.get("cpus") or cpu.get("mems"):
            path = self._paths["cpuset"]
            for key in ("cpus", "mems"):
                if cpu.get(key):
                    fs.write(path, f"cpuset.{key}", cpu[key])
        if r.get("devices"):
            devices.apply_v1(self._paths["devices"], r["devices"])
        if r.get("memory"):
            _set_memory(self._paths["memory"], r["memory"])
        if cpu:
            _set_cpu(self._path("cpu"), cpu)
        pids = r.get("pids") or {}
        if pids.get("limit") is not None:
            limit = pids["limit"]
            fs.write(self._paths["pids"], "pids.max", limit if limit > 0 else "max")
        if r.get("blockIO"):
            _set_blkio(self._paths["blkio"], r["blockIO"])
        for page in r.get("hugepageLimits") or []:
            path, size = self._paths["hugetlb"], page["pageSize"]
            fs.write(path, f"hugetlb.{size}.limit_in_bytes", page["limit"])
            if fs.exists(path, f"hugetlb.{size}.rsvd.limit_in_bytes"):
                fs.write(path, f"hugetlb.{size}.rsvd.limit_in_bytes", page["limit"])
        network = r.get("network") or {}
        if network.get("classID") is not None:
            fs.write(self._paths["net_cls"], "net_cls.classid", network["classID"])
        for prio in network.get("priorities") or []:
            fs.write(self._paths["net_prio"], "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")
        for device, limits in (r.get("rdma") or {}).items():
            fs.write(self._paths["rdma"], "rdma.max", _rdma_line(device, limits))

    # --- observation -----------------------------------------------------------------------

    def oom_kills(self) -> int:
        path = self._path("memory")
        return fs.read_keyed(path, "memory.oom_control").get("oom_kill", 0) if path else 0

    def stats(self) -> Stats:
        if not self.exists():
            raise CgroupError(
                f"cgroup {self._paths.get('memory') or next(iter(self._paths.values()))} does not exist"
            )
        from cais.runtime.cgroups.stats import HugetlbStats, Stats  # dataclasses: only when asked

        s = Stats()
        if path := self._path("cpuacct"):
            c = s.cpu
            c.usage_total = fs.read_uint(path, "cpuacct.usage")
            c.percpu = [int(v) for v in (fs.read_optional(path, "cpuacct.usage_percpu") or "").split()]
            if fs.exists(path, "cpuacct.usage_user"):
                c.usage_user = fs.read_uint(path, "cpuacct.usage_user")
                c.usage_kernel = fs.read_uint(path, "cpuacct.usage_sys")
            else:
                ticks = fs.read_keyed(path, "cpuacct.stat")
                c.usage_user = ticks.get("user", 0) * _NS_PER_TICK
                c.usage_kernel = ticks.get("system", 0) * _NS_PER_TICK
        if path := self._path("cpu"):
            cs = fs.read_keyed(path, "cpu.stat")
            s.cpu.throttling_periods = cs.get("nr_periods", 0)
            s.cpu.throttled_periods = cs.get("nr_throttled", 0)
            s.cpu.throttled_time = cs.get("throttled_time", 0)
        if path := self._path("memory"):
            m = s.memory
            m.raw = fs.read_keyed(path, "memory.stat")
            m.cache = m.raw.get("cache", 0)
            for entry, prefix in ((m.usage, "memory"), (m.swap, "memory.memsw"), (m.kernel, "memory.kmem")):
                _memory_entry(entry, path, prefix)
        if path := self._path("pids"):
            s.pids.current = fs.read_uint(path, "pids.current")
            s.pids.limit = fs.read_uint(path, "pids.max")
        if path := self._path("blkio"):
            # CFQ (old kernels), BFQ, or the throttling layer: the first that saw any I/O (BFQ's
            # files exist while the disk uses another scheduler, and stay empty).
            for kind in ("blkio", "blkio.bfq", "blkio.throttle"):
                serviced = _blkio_entries(path, f"{kind}.io_serviced_recursive")
                if serviced:
                    s.blkio.io_serviced_recursive = serviced
                    s.blkio.io_service_bytes_recursive = _blkio_entries(
                        path, f"{kind}.io_service_bytes_recursive"
                    )
                    break
        if (path := self._path("hugetlb")) and os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes") and ".rsvd." not in name:
                    size = name.split(".")[1]
                    s.hugetlb[size] = HugetlbStats(
                        usage=fs.read_uint(path, name),
                        max=fs.read_uint(path, f"hugetlb.{size}.max_usage_in_bytes"),
                        failcnt=fs.read_uint(path, f"hugetlb.{size}.failcnt"),
                    )
        return s


def _anything_set(value: object) -> bool:
    if isinstance(value, dict):
        return any(v is not None and v != [] for v in value.values())
    return bool(value)


def _make_cpuset(path: str) -> list[str]:
    """mkdir -p for cpuset, giving each empty level the cpus and mems of its parent.

    A new v1 cpuset starts with empty cpuset.cpus/mems, and no process can join it until they
    are set (runc's ensureParent does the same copy). Every empty level up from `path` is filled,
    not only the ones made here: a parent that a concurrent create has just made may not have
    its values yet (copied as they were, empty, a container could not join: ENOSPC).
    """
    created = fs.makedirs(path)
    empty = []
    d = path
    while d != "/" and not (fs.read(d, "cpuset.cpus") and fs.read(d, "cpuset.mems")):
        empty.append(d)
        d = os.path.dirname(d)
    for d in reversed(empty):
        parent = os.path.dirname(d)
        for key in ("cpuset.cpus", "cpuset.mems"):
            if not fs.read(d, key):
                fs.write(d, key, fs.read(parent, key))
    return created


def _set_memory(path: str, mem: dict) -> None:
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    has_swap = fs.exists(path, "memory.memsw.limit_in_bytes")
    if limit == -1 and swap == 0 and has_swap:
        swap = -1  # unlimited memory means unlimited memory+swap too
    if swap and not has_swap:
        if swap != -1:
            raise CgroupError(
                "linux.resources.memory.swap: this kernel has no swap accounting (memory.memsw.*)"
            )
        swap = 0
    # memory <= memory+swap must hold after every single write: raise swap first when growing.
    if limit and swap and (swap == -1 or fs.read_uint(path, "memory.limit_in_bytes") < swap):
        _write_limit(path, "memory.memsw.limit_in_bytes", swap)
        _write_limit(path, "memory.limit_in_bytes", limit)
    else:
        if limit:
            _write_limit(path, "memory.limit_in_bytes", limit)
        if swap:
            _write_limit(path, "memory.memsw.limit_in_bytes", swap)
    if mem.get("reservation"):
        fs.write(path, "memory.soft_limit_in_bytes", mem["reservation"])
    if mem.get("kernelTCP") and fs.exists(path, "memory.kmem.tcp.limit_in_bytes"):
        fs.write(path, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
    if mem.get("disableOOMKiller"):
        fs.write(path, "memory.oom_control", 1)
    if mem.get("swappiness") is not None:
        fs.write(path, "memory.swappiness", mem["swappiness"])


def _write_limit(path: str, name: str, value: int) -> None:
    """Write a memory or memory+swap limit, explaining the kernel's two usual refusals."""
    try:
        fs.write(path, name, value)
    except CgroupError:
        usage = fs.read_uint(path, name.replace("limit_in_bytes", "usage_in_bytes"))
        if 0 < value < usage:
            raise CgroupError(
                f"cannot set memory limit to {value}: the cgroup already uses {usage} bytes ({path})"
            ) from None
        memsw = fs.read_uint(path, "memory.memsw.limit_in_bytes")
        if name == "memory.limit_in_bytes" and value > memsw > 0:
            raise CgroupError(
                f"cannot set memory limit to {value}: above the memory+swap limit {memsw}; set memory.swap too"
            ) from None
        if name == "memory.memsw.limit_in_bytes" and 0 < value < fs.read_uint(path, "memory.limit_in_bytes"):
            raise CgroupError(f"cannot set memory+swap limit to {value}: below the memory limit") from None
        raise


def _set_cpu(path: str | None, cpu: dict) -> None:
    if path is None:
        return
    # Real-time budget first: a parent must have runtime before a child may get some.
    if cpu.get("realtimePeriod"):
        fs.write(path, "cpu.rt_period_us", cpu["realtimePeriod"])
    if cpu.get("realtimeRuntime"):
        fs.write(path, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
    if cpu.get("shares"):
        fs.write(path, "cpu.shares", cpu["shares"])
        got = fs.read_uint(path, "cpu.shares")
        if got != cpu["shares"]:
            bound = "maximum" if cpu["shares"] > got else "minimum"
            raise CgroupError(f"linux.resources.cpu.shares: the {bound} allowed cpu-shares is {got}")
    period, quota = cpu.get("period") or 0, cpu.get("quota") or 0
    period_pending = False
    if period:
        try:
            fs.write(path, "cpu.cfs_period_us", period)
        except CgroupError:
            # A shorter period can be refused while the old quota is in force: retry after quota.
            if not quota:
                raise
            period_pending = True
    if quota:
        fs.write(path, "cpu.cfs_quota_us", quota if quota > 0 else -1)
        if period_pending:
            fs.write(path, "cpu.cfs_period_us", period)
    if cpu.get("burst") is not None and fs.exists(path, "cpu.cfs_burst_us"):
        fs.write(path, "cpu.cfs_burst_us", cpu["burst"])
    if cpu.get("idle") is not None:
        fs.write(path, "cpu.idle", cpu["idle"])


def _set_blkio(path: str, blkio: dict) -> None:
    # Kernels with BFQ but without CFQ name the weight files blkio.bfq.*.
    prefix = "blkio" if fs.exists(path, "blkio.weight") else "blkio.bfq"
    if blkio.get("weight"):
        fs.write(path, f"{prefix}.weight", blkio["weight"])
    if blkio.get("leafWeight"):
        fs.write(path, "blkio.leaf_weight", blkio["leafWeight"])
    for dev in blkio.get("weightDevice") or []:
        if dev.get("weight"):
            fs.write(path, f"{prefix}.weight_device", f"{dev['major']}:{dev['minor']} {dev['weight']}")
        if dev.get("leafWeight"):
            fs.write(path, "blkio.leaf_weight_device", f"{dev['major']}:{dev['minor']} {dev['leafWeight']}")
    for key, name in (
        ("throttleReadBpsDevice", "read_bps_device"),
        ("throttleWriteBpsDevice", "write_bps_device"),
        ("throttleReadIOPSDevice", "read_iops_device"),
        ("throttleWriteIOPSDevice", "write_iops_device"),
    ):
        for dev in blkio.get(key) or []:
            fs.write(path, f"blkio.throttle.{name}", f"{dev['major']}:{dev['minor']} {dev['rate']}")


def _rdma_line(device: str, limits: dict) -> str:
    parts = [device]
    if limits.get("hcaHandles") is not None:
        parts.append(f"hca_handle={limits['hcaHandles']}")
    if limits.get("hcaObjects") is not None:
        parts.append(f"hca_object={limits['hcaObjects']}")
    return " ".join(parts)


def _memory_entry(entry: MemoryEntry, path: str, prefix: str) -> None:
    entry.usage = fs.read_uint(path, f"{prefix}.usage_in_bytes")
    entry.max = fs.read_uint(path, f"{prefix}.max_usage_in_bytes")
    entry.limit = fs.read_uint(path, f"{prefix}.limit_in_bytes")
    entry.failcnt = fs.read_uint(path, f"{prefix}.failcnt")


def _blkio_entries(path: str, name: str) -> list[BlkioEntry]:
    from cais.runtime.cgroups.stats import BlkioEntry

    out = []
    for line in (fs.read_optional(path, name) or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            out.append(BlkioEntry(int(major), int(minor), fields[1], int(fields[2])))
    return out
