"""keyctl(2): a fresh session keyring, so a container does not share the host's keys."""

from __future__ import annotations

from cais.linux.libc import check, libc

_SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    return check(libc.syscall(_SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.encode(), 0, 0, 0),
                 "keyctl(JOIN_SESSION_KEYRING)")
