"""cgroup v2: one directory in the unified hierarchy (Documentation/admin-guide/cgroup-v2.rst).

OCI resources were specified for v1; the conversions follow runc so that a config means the same
on both: cpu.shares -> cpu.weight, blockIO.weight -> io.weight, memory.swap (memory+swap on
v1) -> memory.swap.max (swap alone), devices -> an eBPF program (see devices.py).
"""

from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums (~5 ms at each start)
import os
import time

from cais.runtime.cgroups import devices, fs
from cais.runtime.cgroups.errors import CgroupError
from cais.runtime.cgroups.manager import Manager
from cais.runtime.cgroups.paths import CGROUP_ROOT, Mount, cgroup_mounts, own_cgroups, under_mount
from cais.runtime.cgroups.resources import validate
from cais.runtime.errors import suppress

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from cais.runtime.cgroups.resources import Resources
    from cais.runtime.cgroups.stats import Stats

_UNLIMITED = (1 << 64) - 1  # how runc reports a v2 "max" memory limit


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly (runc's formula); 0 = unset."""
    return 0 if shares == 0 else 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000] (runc's formula); 0 = unset."""
    return 0 if weight == 0 else 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, limit: int) -> int | None:
    """OCI memory.swap is memory+swap (v1's memsw); memory.swap.max is swap alone.

    None leaves memory.swap.max alone and -1 means "max", as runc's
    ConvertMemorySwapToCgroupV2Value; swap equal to the limit gives 0: no swap at all.
    """
    if limit == -1 and swap == 0:
        return -1  # unlimited memory means unlimited swap too
    if swap == 0:
        return None
    if swap == -1:
        return -1
    if limit in (0, -1):
        raise CgroupError("linux.resources.memory.swap: a swap limit needs a memory limit on cgroup v2")
    return swap - limit


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


class V2Manager(Manager):
    version = 2

    def __init__(self, path: str, mountpoint: str | None = None) -> None:
        self._path = path
        self._mountpoint = mountpoint or _mountpoint_of(path)
        self._created: list[str] = []

    @classmethod
    def for_path(cls, inner: str, mountpoint: str | None = None, mounts: list[Mount] | None = None) -> V2Manager:
        """Absolute paths start at the root of the hierarchy; relative ones at the *parent* of the
        caller's cgroup (its own one has processes, so it cannot hand controllers down)."""
        mount = _find_mount(mountpoint, mounts)
        if inner.startswith("/"):
            base = mount.mountpoint
        else:
            base = under_mount(mount, os.path.dirname(own_cgroups().get("", "/")))
        return cls(os.path.join(base, inner.lstrip("/")), mount.mountpoint)

    @property
    def paths(self) -> dict[str, str]:
        return {"": self._path}

    # --- lifecycle -------------------------------------------------------------------------

    def create(self, resources: Resources | None = None) -> None:
        resources = validate(resources)
        try:
            self._make()
            if self._path not in self._created and fs.procs(self._path):  # ours is new, hence empty
                raise CgroupError(f"cgroup {self._path} already has processes in it")
            self._check_controllers(resources)
            self._set(resources)
        except BaseException:
            for d in reversed(self._created):
                with suppress(CgroupError):
                    fs.remove(d)
            self._created = []
            raise

    def _make(self) -> None:
        """mkdir -p, handing every controller of the root down to the new cgroup's parent."""
        rel = os.path.relpath(self._path, self._mountpoint)
        if rel.startswith(".."):
            raise CgroupError(f"cgroup {self._path} is outside the cgroup2 mount {self._mountpoint}")
        available = fs.read(self._mountpoint, "cgroup.controllers").split()
        current = self._mountpoint
        for part in rel.split("/"):
            _enable(current, available)
            current = os.path.join(current, part)
            self._created += fs.makedirs(current)

    def update(self, resources: Resources) -> None:
        resources = validate(resources)
        self._check_controllers(resources)
        self._set(resources)

    def exists(self) -> bool:
        return os.path.isdir(self._path)

    def add(self, pid: int) -> None:
        fs.write_proc(self._path, pid)

    def delegate(self, uid: int, gid: int) -> None:
        """chown the directory and the files the kernel lists as delegatable
        (/sys/kernel/cgroup/delegate), so that a container with its own user namespace and
        cgroup namespace can make sub-cgroups and move its processes between them, as runc does.
        Limits stay with the parent: a delegatee can never raise its own."""
        try:
            with open("/sys/kernel/cgroup/delegate") as f:
                names = f.read().split()
        except OSError:
            names = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]
        try:
            os.chown(self._path, uid, gid)
            for name in names:
                with suppress(FileNotFoundError):
                    os.chown(os.path.join(self._path, name), uid, gid)
        except OSError as e:
            raise CgroupError(f"cannot delegate cgroup {self._path} to {uid}:{gid}: {e.strerror}") from None

    def pids(self) -> list[int]:
        return fs.procs(self._path) if os.path.isdir(self._path) else []

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        # cgroup.kill (Linux 5.14) kills the whole subtree, forks included, in one write.
        if sig == _signal.SIGKILL and fs.exists(self._path, "cgroup.kill"):
            fs.write(self._path, "cgroup.kill", 1)
            return
        super().kill(sig)

    # --- freezer ---------------------------------------------------------------------------

    def freeze(self) -> None:
        fs.write(self._path, "cgroup.freeze", 1)
        if not self._wait_frozen(True):
            fs.write(self._path, "cgroup.freeze", 0)
            raise CgroupError(f"cannot freeze {self._path}: cgroup.events never reported frozen")

    def thaw(self) -> None:
        fs.write(self._path, "cgroup.freeze", 0)
        self._wait_frozen(False)

    def _wait_frozen(self, want: bool, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            if bool(fs.read_keyed(self._path, "cgroup.events").get("frozen")) == want:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def frozen(self) -> bool:
        return fs.read_optional(self._path, "cgroup.freeze") == "1"

    # --- resources -------------------------------------------------------------------------

    def _check_controllers(self, r: Resources) -> None:
        """Name the missing controller instead of failing later on a missing file."""
        enabled = set((fs.read_optional(self._path, "cgroup.controllers") or "").split())
        cpu = r.get("cpu") or {}
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise CgroupError("linux.resources.cpu.realtime*: cgroup v2 has no real-time CPU budget")
        wanted = {
            "memory": any(
                v for k, v in (r.get("memory") or {}).items() if k in ("limit", "reservation", "swap")
            ),
            "cpu": any(cpu.get(k) is not None for k in ("shares", "quota", "period", "burst", "idle")),
            "cpuset": bool(cpu.get("cpus") or cpu.get("mems")),
            "pids": (r.get("pids") or {}).get("limit") is not None,
            "io": _anything(r.get("blockIO")),
            "hugetlb": bool(r.get("hugepageLimits")),
            "rdma": bool(r.get("rdma")),
        }
        for key in r.get("unified") or {}:
            prefix = key.split(".")[0]
            if prefix != "cgroup":
                wanted[prefix] = True
        for controller, needed in wanted.items():
            if needed and controller not in enabled:
                raise CgroupError(
                    f"the {controller} controller is not available in {self._path}"
                    f" (cgroup.controllers: {' '.join(sorted(enabled)) or 'none'})"
                )

    def _set(self, r: Resources) -> None:
        path = self._path
        cpu = r.get("cpu") or {}
        for key in ("cpus", "mems"):
            if cpu.get(key):
                fs.write(path, f"cpuset.{key}", cpu[key])
        if r.get("memory"):
            _set_memory(path, r["memory"])
        _set_cpu(path, cpu)
        limit = (r.get("pids") or {}).get("limit")
        if limit is not None:
            fs.write(path, "pids.max", limit if limit > 0 else "max")
        if r.get("blockIO"):
            _set_io(path, r["blockIO"])
        for page in r.get("hugepageLimits") or []:
            size = page["pageSize"]
            fs.write(path, f"hugetlb.{size}.max", page["limit"])
            if fs.exists(path, f"hugetlb.{size}.rsvd.max"):
                fs.write(path, f"hugetlb.{size}.rsvd.max", page["limit"])
        for device, limits in (r.get("rdma") or {}).items():
            parts = [device]
            for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
                if limits.get(key) is not None:
                    parts.append(f"{name}={limits[key]}")
            fs.write(path, "rdma.max", " ".join(parts))
        if r.get("devices"):
            devices.apply_v2(path, r["devices"])
        for key, value in (r.get("unified") or {}).items():
            if not fs.exists(path, key):
                raise CgroupError(f"linux.resources.unified.{key}: no such cgroup file in {path}")
            fs.write(path, key, value)

    # --- observation -----------------------------------------------------------------------

    def oom_kills(self) -> int:
        return fs.read_keyed(self._path, "memory.events").get("oom_kill", 0)

    def stats(self) -> Stats:
        if not self.exists():
            raise CgroupError(f"cgroup {self._path} does not exist")
        from cais.runtime.cgroups.stats import BlkioEntry, HugetlbStats, MemoryEntry, Stats  # only when asked

        path, s = self._path, Stats()
        cs = fs.read_keyed(path, "cpu.stat")
        c = s.cpu
        c.usage_total = cs.get("usage_usec", 0) * 1000
        c.usage_user = cs.get("user_usec", 0) * 1000
        c.usage_kernel = cs.get("system_usec", 0) * 1000
        c.throttling_periods = cs.get("nr_periods", 0)
        c.throttled_periods = cs.get("nr_throttled", 0)
        c.throttled_time = cs.get("throttled_usec", 0) * 1000
        if fs.exists(path, "memory.current"):
            m = s.memory
            m.raw = fs.read_keyed(path, "memory.stat")
            m.cache = m.raw.get("file", 0)
            m.usage = MemoryEntry(
                usage=fs.read_uint(path, "memory.current"),
                max=fs.read_uint(path, "memory.peak"),
                limit=_limit(fs.read_optional(path, "memory.max")),
                failcnt=fs.read_keyed(path, "memory.events").get("max", 0),
            )
            if fs.exists(path, "memory.swap.current"):
                # runc reports memory+swap, as v1's memsw, for consumers written for v1.
                swap_limit = _limit(fs.read_optional(path, "memory.swap.max"))
                m.swap = MemoryEntry(
                    usage=fs.read_uint(path, "memory.swap.current") + m.usage.usage,
                    max=fs.read_uint(path, "memory.swap.peak"),
                    limit=swap_limit if swap_limit == _UNLIMITED else swap_limit + m.usage.limit,
                    failcnt=fs.read_keyed(path, "memory.swap.events").get("max", 0),
                )
        s.pids.current = fs.read_uint(path, "pids.current")
        s.pids.limit = fs.read_uint(path, "pids.max")
        for line in (fs.read_optional(path, "io.stat") or "").splitlines():
            device, *pairs = line.split()
            major, minor = (int(x) for x in device.split(":"))
            values = dict(p.split("=", 1) for p in pairs if "=" in p)
            for key, op, entries in (
                ("rbytes", "Read", s.blkio.io_service_bytes_recursive),
                ("wbytes", "Write", s.blkio.io_service_bytes_recursive),
                ("rios", "Read", s.blkio.io_serviced_recursive),
                ("wios", "Write", s.blkio.io_serviced_recursive),
            ):
                if key in values:
                    entries.append(BlkioEntry(major, minor, op, int(values[key])))
        for name in sorted(os.listdir(path)):
            if name.startswith("hugetlb.") and name.endswith(".current") and ".rsvd." not in name:
                size = name.split(".")[1]
                s.hugetlb[size] = HugetlbStats(
                    usage=fs.read_uint(path, name),
                    max=fs.read_uint(path, f"hugetlb.{size}.max"),
                    failcnt=fs.read_keyed(path, f"hugetlb.{size}.events").get("max", 0),
                )
        return s


def _limit(text: str | None) -> int:
    return _UNLIMITED if text == "max" else fs.parse_uint(text)


def _anything(value: object) -> bool:
    return isinstance(value, dict) and any(v is not None and v != [] for v in value.values())


def _find_mount(mountpoint: str | None, mounts: list[Mount] | None = None):
    mounts = [m for m in (cgroup_mounts() if mounts is None else mounts) if m.fstype == "cgroup2"]
    for m in mounts:
        if m.mountpoint == (mountpoint or CGROUP_ROOT):
            return m
    if mountpoint is None and mounts:
        return mounts[0]
    raise CgroupError(f"no cgroup2 hierarchy is mounted at {mountpoint or CGROUP_ROOT}")


def _mountpoint_of(path: str) -> str:
    best = ""
    for m in cgroup_mounts():
        if m.fstype == "cgroup2" and (path + "/").startswith(m.mountpoint.rstrip("/") + "/"):
            best = max(best, m.mountpoint, key=len)
    if not best:
        raise CgroupError(f"{path} is not in a cgroup2 hierarchy")
    return best


def _enable(directory: str, controllers: list[str]) -> None:
    """Hand controllers down from ``directory`` to its children, as many as it will take.

    All at once first; then one by one, since one refusal (a controller the parent lacks, or a
    threaded subtree) fails the whole write. What stays off is reported by _check_controllers.
    """
    have = set(fs.read(directory, "cgroup.subtree_control").split())
    missing = [c for c in controllers if c not in have]
    if not missing:
        return
    try:
        fs.write(directory, "cgroup.subtree_control", " ".join("+" + c for c in missing))
    except CgroupError:
        for c in missing:
            with suppress(CgroupError):
                fs.write(directory, "cgroup.subtree_control", "+" + c)


def _set_memory(path: str, mem: dict) -> None:
    limit = mem.get("limit") or 0
    if mem.get("checkBeforeUpdate") and limit > 0:
        # OCI 1.2: refuse rather than let the kernel reclaim and OOM-kill down to the new limit.
        usage = fs.read_uint(path, "memory.current")
        if usage > limit:
            raise CgroupError(
                f"cannot set memory limit to {limit}: the cgroup already uses {usage} bytes ({path})"
            )
    swap = swap_to_v2(mem.get("swap") or 0, limit)
    if swap is not None:
        if fs.exists(path, "memory.swap.max"):
            fs.write(path, "memory.swap.max", _max(swap))
        elif swap not in (-1, 0):
            # Without swap accounting there is no file: "no limit" and "no swap" need none.
            raise CgroupError(
                "linux.resources.memory.swap: this kernel has no swap accounting (memory.swap.max)"
            )
    if limit:
        fs.write(path, "memory.max", _max(limit))
    if mem.get("reservation"):
        fs.write(path, "memory.low", _max(mem["reservation"]))


def _set_cpu(path: str, cpu: dict) -> None:
    if cpu.get("idle") is not None:
        fs.write(path, "cpu.idle", cpu["idle"])
    if cpu.get("shares") and cpu.get("idle") != 1:
        fs.write(path, "cpu.weight", shares_to_weight(cpu["shares"]))
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota or period:
        # Only a period given: keep the quota in force.
        quota_text = _max(quota) if quota else fs.read(path, "cpu.max").split()[0]
        fs.write(path, "cpu.max", f"{quota_text} {period}" if period else quota_text)
    if cpu.get("burst") is not None:
        fs.write(path, "cpu.max.burst", cpu["burst"])


def _set_io(path: str, blkio: dict) -> None:
    bfq = fs.exists(path, "io.bfq.weight")
    if blkio.get("weight"):
        if bfq:
            fs.write(path, "io.bfq.weight", blkio["weight"])
        else:
            fs.write(path, "io.weight", f"default {blkio_to_io_weight(blkio['weight'])}")
    for dev in blkio.get("weightDevice") or []:
        if dev.get("weight"):
            if bfq:
                fs.write(path, "io.bfq.weight", f"{dev['major']}:{dev['minor']} {dev['weight']}")
            else:
                fs.write(
                    path, "io.weight", f"{dev['major']}:{dev['minor']} {blkio_to_io_weight(dev['weight'])}"
                )
    for key, name in (
        ("throttleReadBpsDevice", "rbps"),
        ("throttleWriteBpsDevice", "wbps"),
        ("throttleReadIOPSDevice", "riops"),
        ("throttleWriteIOPSDevice", "wiops"),
    ):
        for dev in blkio.get(key) or []:
            # v1 takes 0 as "no limit"; v2 spells it "max".
            rate = dev["rate"] or "max"
            fs.write(path, "io.max", f"{dev['major']}:{dev['minor']} {name}={rate}")
