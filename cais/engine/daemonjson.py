"""daemon.json's place and reading it: shared by caisd (cais.daemon.config, with its flags) and by
the daemonless CLI, which needs a few of its keys (userns-remap, log-driver, log-opts,
default-ipc-mode, default-cgroupns-mode) without importing the daemon's flag parser."""

from __future__ import annotations

import json

DEFAULT_CONFIG = "/etc/cais/daemon.json"


def read(path: str) -> dict | None:
    """The file's JSON (None if there is no file); OSError or ValueError if it cannot be read or parsed."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def namespace_defaults(ipc: object = None, cgroupns: object = None) -> dict[str, str]:
    """default-ipc-mode and default-cgroupns-mode (None: dockerd's defaults), checked as dockerd
    checks them, as the engine's `namespace_defaults`; ValueError with dockerd's message."""
    ipc = "private" if ipc is None else ipc
    cgroupns = "" if cgroupns is None else cgroupns
    if ipc not in ("private", "shareable"):
        raise ValueError(f'IPC mode "{ipc}" is not supported as default value')
    if cgroupns not in ("", "host", "private"):
        raise ValueError(f'default cgroup namespace mode "{cgroupns}" is invalid')
    return {"ipc": str(ipc), "cgroupns": str(cgroupns)}
