"""features: what this runtime supports, in the OCI features JSON."""

from __future__ import annotations

from cais.linux.capabilities import NAMES, last_cap
from cais.runtime import rootfs, seccomp, spec

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": spec.OCI_VERSION,
        "hooks": list(spec.HOOK_NAMES),
        "mountOptions": sorted(set(rootfs._FLAGS) | set(rootfs.PROPAGATION)),
        "linux": {
            "namespaces": [n for n in spec.NAMESPACE_TYPES if n != "time"],
            "capabilities": list(NAMES[: last_cap() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": list(seccomp.ACTIONS), "operators": list(seccomp.OPERATORS),
                        "archs": list(seccomp.ARCHES), "knownFlags": list(seccomp.FLAGS),
                        "supportedFlags": list(seccomp.FLAGS)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
    }
