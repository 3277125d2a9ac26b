"""Volume names: docker's pattern, and the 64-hex names of generated (anonymous) volumes."""

from __future__ import annotations

import re
import secrets

from cais.volume.errors import InvalidVolume

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_LEN = 255  # a directory name (NAME_MAX)


def validate(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidVolume(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                            "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
                            "directory, use absolute path")
    if len(name) > MAX_LEN:
        raise InvalidVolume(f"create {name[:32]}…: volume name too long (at most {MAX_LEN} characters)")
    return name


def generate() -> str:
    return secrets.token_hex(32)
