"""The confinement every container gets unless asked otherwise: docker's defaults, or stricter.

One place for the engine (`cais run`, `cais build`) and the runtime (`cais-runtime spec`):
the capability set, the masked and read-only /proc and /sys paths, the device cgroup allow
list and (in `seccomp`) docker's default seccomp profile. docs/security.md says why each is there.
"""

from __future__ import annotations

from cais.linux.capabilities import NAMES as ALL_CAPS

# docker's 14: what ordinary images need (chown, setuid daemons dropping privileges, ping,
# binding :80, chroot) and nothing that reaches the kernel's global state.
CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")

# Files of the host's kernel that leak host state (kernel memory, keys, timers of other
# processes, hardware) or let a write reach hardware: a /dev/null or an empty read-only tmpfs
# is mounted over each. docker's list plus /proc/interrupts (per-CPU interrupt counts, a side channel).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")

# Host-wide kernel knobs under /proc: bind-mounted read-only over themselves.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# linux.resources.devices: deny everything, then docker's allow list of pseudo devices. Unlike
# docker, no blanket `c *:* m` / `b *:* m`: creating a device node is refused too, not only
# opening it (a node created in a volume would otherwise be usable by a privileged peer).
DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},     # zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},     # null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},     # urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},     # random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},     # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},     # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},     # ptmx
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},     # full
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},               # pts/*
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
)

__all__ = ["ALL_CAPS", "CAPS", "DEVICE_RULES", "MASKED_PATHS", "READONLY_PATHS"]
