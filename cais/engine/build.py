"""Which cais a process runs: the package version, the supervisor protocol and a code fingerprint.

The supervisor is long-lived and keeps the code it imported at its start, runtime included; after an
upgrade of cais it still runs the old code. caisd compares its own build with the supervisor's (the
`list` reply carries it) to say so, and to refuse a supervisor whose protocol it does not speak.
"""

from __future__ import annotations

import hashlib
import os

from cais import __version__

# The supervisor's wire protocol (the requests listed in supervisor.py). Bump it when a request or a
# reply changes incompatibly. Supervisors from before the handshake send no build: they speak 1.
# 2 adds `create` (create, answer, start on the same connection); caisd still speaks 1 to older ones.
# 3 adds the log drivers' settings: `log.driver` (local) and `log.attrs`; caisd refuses them to older ones.
PROTOCOL = 3
SPOKEN = (1, 2, 3)


def fingerprint() -> str:
    """A hash of the package's modules (names, sizes, mtimes): it changes when cais is reinstalled."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    skip = len(top) + 1  # the path under top (os.path.relpath: 2.5 ms of every daemonless command)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                h.update(f"{path[skip:]}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def identity() -> dict:
    return {"version": __version__, "protocol": PROTOCOL, "code": fingerprint()}


def describe(build: dict | None) -> str:
    if not build:
        return "cais from before the version handshake"
    return f"cais {build.get('version')} (protocol {build.get('protocol')}, code {build.get('code')})"
