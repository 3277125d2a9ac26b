"""Restart policies (no, always, on-failure[:N], unless-stopped) and docker's backoff."""

from __future__ import annotations

from cais.engine.errors import InvalidParameter

POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # a container that ran this long starts over at the smallest delay


def parse_policy(value: dict | None) -> dict:
    policy = value or {}
    if not isinstance(policy, dict):
        raise InvalidParameter("invalid RestartPolicy: expected an object")
    name = policy.get("Name") or "no"
    if name not in POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    count = policy.get("MaximumRetryCount") or 0
    if not isinstance(count, int) or count < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    return {"Name": name, "MaximumRetryCount": count}


def should_restart(policy: dict, exit_code: int, restart_count: int, manually_stopped: bool) -> bool:
    name = policy.get("Name") or "no"
    if manually_stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    limit = policy.get("MaximumRetryCount") or 0
    return exit_code != 0 and (limit == 0 or restart_count < limit)


def next_delay(previous: float, ran_for: float) -> float:
    if ran_for >= RESET_AFTER or previous <= 0:
        return BACKOFF_START
    return min(previous * 2, BACKOFF_MAX)
