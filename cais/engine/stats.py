"""`docker stats` documents from the container's cgroup (cais.runtime.cgroups) and /proc.

Network counters come from the container's own network namespace, read through its init
process's /proc/PID/net/dev (the kernel shows each process the devices of its namespace), as
dockerd reports them: one entry per interface but the loopback, none for `--network host`.
"""

from __future__ import annotations

import os
import time

from cais.engine import logs

_ZERO = "0001-01-01T00:00:00Z"


def _system_cpu_usage() -> int:
    """Host CPU time in nanoseconds (the first line of /proc/stat, as docker computes it)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _blkio(entries: list) -> list[dict]:  # type: ignore[type-arg]
    return [{"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}
            for e in entries]


_NET_DEV_FIELDS = {0: "rx_bytes", 1: "rx_packets", 2: "rx_errors", 3: "rx_dropped",
                   8: "tx_bytes", 9: "tx_packets", 10: "tx_errors", 11: "tx_dropped"}


def networks(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters of the network namespace `pid` is in (its /proc/PID/net/dev), as
    docker's `networks`: the loopback left out."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:  # the process is gone
        return {}
    found = {}
    for line in lines:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = counters.split()
        if name == "lo" or len(values) < 16:
            continue
        found[name] = {key: int(values[i]) for i, key in _NET_DEV_FIELDS.items()}
    return found


def collect(engine, record: dict, previous: dict | None = None) -> dict:  # type: ignore[no-untyped-def]
    """One stats sample; `previous` (the last sample) fills precpu_stats like docker's stream."""
    base = {"read": logs.timestamp(), "preread": (previous or {}).get("read", _ZERO), "name": record["Name"],
            "id": record["Id"], "num_procs": 0, "storage_stats": {},
            "precpu_stats": (previous or {}).get("cpu_stats") or {"cpu_usage": {"total_usage": 0,
                                                                                "usage_in_kernelmode": 0,
                                                                                "usage_in_usermode": 0},
                                                                  "throttling_data": {"periods": 0,
                                                                                      "throttled_periods": 0,
                                                                                      "throttled_time": 0}}}
    if not record["State"]["Running"]:
        return {**base, "pids_stats": {}, "blkio_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0},
                                                                           "throttling_data": {}},
                "memory_stats": {}}
    from cais.runtime.cgroups import open_manager
    stats = open_manager(engine.cgroups_path(record["Id"]), record["Id"]).stats()
    c, m = stats.cpu, stats.memory
    limit = m.usage.limit or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if limit >= 1 << 62:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mode = record["HostConfig"].get("NetworkMode") or ""
    pid = record["State"].get("Pid") or 0
    nets = networks(pid) if pid and mode != "host" and not mode.startswith("container:") else {}
    return {
        **base,
        **({"networks": nets} if nets else {}),
        "pids_stats": {"current": stats.pids.current, **({"limit": stats.pids.limit} if stats.pids.limit else {})},
        "blkio_stats": {"io_service_bytes_recursive": _blkio(stats.blkio.io_service_bytes_recursive),
                        "io_serviced_recursive": _blkio(stats.blkio.io_serviced_recursive),
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "cpu_stats": {"cpu_usage": {"total_usage": c.usage_total, "percpu_usage": c.percpu or None,
                                    "usage_in_kernelmode": c.usage_kernel, "usage_in_usermode": c.usage_user},
                      "system_cpu_usage": _system_cpu_usage(), "online_cpus": os.cpu_count() or 1,
                      "throttling_data": {"periods": c.throttling_periods, "throttled_periods": c.throttled_periods,
                                          "throttled_time": c.throttled_time}},
        "memory_stats": {"usage": m.usage.usage, "max_usage": m.usage.max, "failcnt": m.usage.failcnt,
                         "limit": limit, "stats": dict(m.raw)},
    }


def stream(engine, ref: str, interval: float = 1.0):  # type: ignore[no-untyped-def]
    """Samples every `interval` seconds while the container exists."""
    previous = None
    while True:
        record = engine.get(ref)
        sample = collect(engine, record, previous)
        yield sample
        previous = sample
        time.sleep(interval)
