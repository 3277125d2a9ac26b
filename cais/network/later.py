"""Cleanup that may finish after its caller returns: a stopped container's veths, then their addresses.

Deleting a link makes the kernel wait for RCU grace periods: a few ms on an idle machine, tens
under load, all of it between a container's exit and its report. The manager hands that work to
one worker thread, job by job in order, and settles an owner's jobs before it is given an address
again (and all of them before a network goes or the daemon stops).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("cais.network")
_IDLE = 2.0  # seconds the worker waits for more work before its thread ends


class Later:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jobs: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self.running = ""  # the owner of the job in progress
        self.worker: threading.Thread | None = None

    def submit(self, owner: str, job: Callable[[], None]) -> None:
        """Run `job` for `owner` after the jobs already given. The worker's thread is in the
        caller's network namespace, and a job should not depend on it."""
        with self.cond:
            self.jobs.append((owner, job))
            self.cond.notify_all()
            if self.worker is None:
                self.worker = threading.Thread(target=self._work, name="cais-net-later", daemon=True)
                self.worker.start()

    def settle(self, owner: str | None = None) -> None:
        """Wait until the jobs of `owner` (None: every job) are done."""
        with self.cond:
            self.cond.wait_for(lambda: not self._pending(owner))

    def _pending(self, owner: str | None) -> bool:
        if owner is None:
            return bool(self.jobs or self.running)
        return self.running == owner or any(o == owner for o, _ in self.jobs)

    def close(self) -> None:
        """Every job done and the worker gone (its thread holds the namespace it was made in)."""
        with self.cond:
            self.cond.wait_for(lambda: not self._pending(None))
            worker, self.worker = self.worker, None
            self.cond.notify_all()
        if worker is not None:
            worker.join()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.jobs or self.worker is not me, _IDLE)
                if not self.jobs or self.worker is not me:
                    if self.worker is me:
                        self.worker = None
                    return
                self.running, job = self.jobs.popleft()
            try:
                job()
            except Exception:  # a cleanup that fails is logged; the next ones still run
                log.exception("network cleanup of %s", self.running[:12])
            with self.cond:
                self.running = ""
                self.cond.notify_all()
