"""Statistics of a container's cgroup, shaped like runc's ``events --stats`` (types.Stats).

Units: CPU times in nanoseconds, memory and I/O in bytes. A limit of 0 means "no limit".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class CpuStats:
    usage_total: int = 0
    usage_user: int = 0
    usage_kernel: int = 0
    percpu: list[int] = field(default_factory=list)
    throttling_periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0


@dataclass
class MemoryEntry:
    usage: int = 0
    max: int = 0  # peak usage
    limit: int = 0
    failcnt: int = 0


@dataclass
class MemoryStats:
    usage: MemoryEntry = field(default_factory=MemoryEntry)
    swap: MemoryEntry = field(default_factory=MemoryEntry)  # v1: memory+swap, as runc reports it
    kernel: MemoryEntry = field(default_factory=MemoryEntry)
    cache: int = 0
    raw: dict[str, int] = field(default_factory=dict)  # memory.stat


@dataclass
class PidsStats:
    current: int = 0
    limit: int = 0


@dataclass
class BlkioEntry:
    major: int
    minor: int
    op: str  # "Read", "Write", "Sync", "Async", "Discard", "Total"
    value: int


@dataclass
class BlkioStats:
    io_service_bytes_recursive: list[BlkioEntry] = field(default_factory=list)
    io_serviced_recursive: list[BlkioEntry] = field(default_factory=list)


@dataclass
class HugetlbStats:
    usage: int = 0
    max: int = 0
    failcnt: int = 0


@dataclass
class Stats:
    cpu: CpuStats = field(default_factory=CpuStats)
    memory: MemoryStats = field(default_factory=MemoryStats)
    pids: PidsStats = field(default_factory=PidsStats)
    blkio: BlkioStats = field(default_factory=BlkioStats)
    hugetlb: dict[str, HugetlbStats] = field(default_factory=dict)

    def to_runc(self) -> dict:
        """The ``data`` object of ``runc events --stats`` (what containerd's runc shim parses)."""

        def mem(e: MemoryEntry) -> dict:
            return {"limit": e.limit, "usage": e.usage, "max": e.max, "failcnt": e.failcnt}

        def entries(es: list[BlkioEntry]) -> list[dict]:
            return [asdict(e) for e in es]

        c, m = self.cpu, self.memory
        return {
            "cpu": {
                "usage": {
                    "total": c.usage_total,
                    "percpu": c.percpu,
                    "kernel": c.usage_kernel,
                    "user": c.usage_user,
                },
                "throttling": {
                    "periods": c.throttling_periods,
                    "throttledPeriods": c.throttled_periods,
                    "throttledTime": c.throttled_time,
                },
            },
            "memory": {
                "cache": m.cache,
                "usage": mem(m.usage),
                "swap": mem(m.swap),
                "kernel": mem(m.kernel),
                "raw": m.raw,
            },
            "pids": {"current": self.pids.current, "limit": self.pids.limit},
            "blkio": {
                "ioServiceBytesRecursive": entries(self.blkio.io_service_bytes_recursive),
                "ioServicedRecursive": entries(self.blkio.io_serviced_recursive),
            },
            "hugetlb": {size: asdict(h) for size, h in self.hugetlb.items()},
        }
