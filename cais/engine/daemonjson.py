"""daemon.json's place and reading it: shared by caisd (cais.daemon.config, with its flags) and by
the daemonless CLI, which needs a few of its keys (userns-remap, log-driver, log-opts) without
importing the daemon's flag parser."""

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
