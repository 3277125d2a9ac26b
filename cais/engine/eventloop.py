"""caisd's event loop: uvloop's when installed.

Every request of a `docker run` is a handful of loop turns, transports and callbacks; libuv's loop
does them in C, asyncio's in Python. Without uvloop (it is optional), asyncio's own loop runs the
same code. (The supervisor keeps asyncio's: it reaps on SIGCHLD, which uvloop keeps for itself.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run(main) on the fastest loop at hand."""
    with asyncio.Runner(loop_factory=factory()) as runner:
        return runner.run(main)
