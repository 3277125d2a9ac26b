"""Deleting trees (and other disk chores) off the caller's critical path.

The caller first renames a tree away under a name nothing trusts (so it is gone at once for
everyone), then hands it here: one background thread, started on first use and kept (starting a
thread per removal cost more than the rename), deletes it. (Not at a lower CPU priority: a niced
thread that holds the GIL when it is preempted stalls every other thread of the process — the
requests — until the scheduler gets back to it.) An exiting process first finishes the work handed
over (an atexit hook), so a short-lived process (the CLI's in-process engine) leaves
nothing behind; a crash leaves the tree under its staging name, which the next start sweeps.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import os
import shutil
import threading
from collections.abc import Callable

_cond = threading.Condition()
_pending: collections.deque[Callable[[], None]] = collections.deque()  # the first one is running
_worker: threading.Thread | None = None


def delete_later(path: str) -> None:
    """Delete the tree at `path` (already renamed away by the caller) in the background."""
    run_later(functools.partial(shutil.rmtree, path, ignore_errors=True))


def run_later(chore: Callable[[], None]) -> None:
    """Run `chore` in the background, after what was handed over before (its exceptions are
    dropped: a chore must be one whose failure harms nothing)."""
    global _worker
    with _cond:
        _pending.append(chore)
        if _worker is None:
            _worker = threading.Thread(target=_work, name="cais-reclaim", daemon=True)
            _worker.start()
        _cond.notify_all()


def _work() -> None:
    while True:
        with _cond:
            while not _pending:
                _cond.wait()
            chore = _pending[0]
        with contextlib.suppress(Exception):
            chore()
        del chore  # nothing of it kept while waiting for the next (a driver it belongs to may go)
        with _cond:
            _pending.popleft()
            _cond.notify_all()


def wait_idle() -> None:
    """Until everything handed over so far is done (for tests and orderly shutdowns)."""
    with _cond:
        while _pending and _worker is not None:
            _cond.wait()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: it starts its own worker if it needs one
    (what the parent handed over is the parent's to do)."""
    global _cond, _worker
    _cond = threading.Condition()
    _pending.clear()
    _worker = None


atexit.register(wait_idle)
os.register_at_fork(after_in_child=_after_fork_in_child)
