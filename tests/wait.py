"""Waiting for a condition in tests: poll observable state, never sleep a guessed time.

The deadline only ends a hang; it is generous because the CI machine may be slow and loaded
(speed is measured in bench/, never by a test).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60, interval: float = 0.05) -> None:
    """Poll until ``condition()`` is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
