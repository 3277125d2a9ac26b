"""OCI hooks: each one a program run with the container's state JSON on its stdin."""

from __future__ import annotations

import json
import subprocess

from cais.runtime.errors import HookFailed

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any


def run(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Run the hooks of one kind in order; the first failure raises HookFailed."""
    payload = json.dumps(state).encode()
    for hook in hooks:
        args = hook.get("args") or [hook["path"]]
        env = dict(e.split("=", 1) for e in hook.get("env", []))
        try:
            done = subprocess.run(args, executable=hook["path"], input=payload, env=env, capture_output=True,
                                  timeout=hook.get("timeout"), check=False)
        except subprocess.TimeoutExpired:
            raise HookFailed(f"{kind} hook {hook['path']} timed out after {hook['timeout']}s") from None
        except OSError as e:
            raise HookFailed(f"{kind} hook {hook['path']}: {e.strerror}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise HookFailed(f"{kind} hook {hook['path']} exited with status {done.returncode}"
                             + (f": {detail[-1]}" if detail else ""))
