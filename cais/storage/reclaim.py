"""Deleting trees off the caller's critical path (a removed container's layer and directory).

The caller first renames a tree away under a name nothing trusts (so it is gone at once for
everyone), then hands it here: one background thread deletes it. The thread is not a daemon and
ends once idle, so a short-lived process (the CLI's in-process engine) still finishes its
deletions before it exits; a crash leaves the tree under its staging name, which the next start
sweeps.
"""

from __future__ import annotations

import queue
import shutil
import threading

_IDLE = 0.2  # seconds the thread waits for more work before it ends

_queue: queue.SimpleQueue[str] = queue.SimpleQueue()
_lock = threading.Lock()
_worker: threading.Thread | None = None


def delete_later(path: str) -> None:
    """Delete the tree at `path` (already renamed away by the caller) in the background."""
    global _worker
    with _lock:
        _queue.put(path)
        if _worker is None:
            _worker = threading.Thread(target=_work, name="cais-reclaim")
            _worker.start()


def _work() -> None:
    global _worker
    while True:
        try:
            path = _queue.get(timeout=_IDLE)
        except queue.Empty:
            with _lock:
                if _queue.empty():
                    _worker = None
                    return
            continue
        shutil.rmtree(path, ignore_errors=True)


def wait_idle() -> None:
    """Until every tree handed over so far is deleted (for tests and orderly shutdowns)."""
    with _lock:
        worker = _worker
    if worker is not None:
        worker.join()
