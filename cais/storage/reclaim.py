"""Deleting trees off the caller's critical path (a removed container's layer and directory).

The caller first renames a tree away under a name nothing trusts (so it is gone at once for
everyone), then hands it here: one background thread, started on first use and kept (starting a
thread per removal cost more than the rename), deletes it. An exiting process first finishes the
deletions handed over (an atexit hook), so a short-lived process (the CLI's in-process engine)
leaves nothing behind; a crash leaves the tree under its staging name, which the next start sweeps.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import threading

_cond = threading.Condition()
_pending: collections.deque[str] = collections.deque()  # the first one is being deleted
_worker: threading.Thread | None = None


def delete_later(path: str) -> None:
    """Delete the tree at `path` (already renamed away by the caller) in the background."""
    global _worker
    with _cond:
        _pending.append(path)
        if _worker is None:
            _worker = threading.Thread(target=_work, name="cais-reclaim", daemon=True)
            _worker.start()
        _cond.notify_all()


def _work() -> None:
    while True:
        with _cond:
            while not _pending:
                _cond.wait()
            path = _pending[0]
        shutil.rmtree(path, ignore_errors=True)
        with _cond:
            _pending.popleft()
            _cond.notify_all()


def wait_idle() -> None:
    """Until every tree handed over so far is deleted (for tests and orderly shutdowns)."""
    with _cond:
        while _pending and _worker is not None:
            _cond.wait()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: it starts its own worker if it needs one
    (the trees the parent handed over are the parent's to delete)."""
    global _cond, _worker
    _cond = threading.Condition()
    _pending.clear()
    _worker = None


atexit.register(wait_idle)
os.register_at_fork(after_in_child=_after_fork_in_child)
