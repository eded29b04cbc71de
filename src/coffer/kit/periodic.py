"""A small scheduler for bounded background jobs (sweeps, retries, purges) in one thread.

Each job runs at its own interval; one failing job is logged and tried again at its next turn,
never stopping the others. `stop()` returns once the current job finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]
    next_at: float = 0.0


class Periodic:
    def __init__(self, jobs: list[Job], *, name: str = "coffer-periodic") -> None:
        assert all(job.interval_s > 0 for job in jobs)
        self._jobs = jobs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        now = time.monotonic()
        for job in self._jobs:
            job.next_at = now + job.interval_s
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_all_now(self) -> None:
        """Run every job once, in order (for tests and the demo)."""
        for job in self._jobs:
            self._run(job)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self._jobs:
                if self._stop.is_set():
                    return
                if job.next_at <= now:
                    self._run(job)
                    job.next_at = time.monotonic() + job.interval_s
            upcoming = min((job.next_at for job in self._jobs), default=now + 1.0)
            self._stop.wait(max(0.05, upcoming - time.monotonic()))

    @staticmethod
    def _run(job: Job) -> None:
        try:
            job.run()
        except Exception:  # one job's failure must not stop the others
            log.exception("periodic job %s failed", job.name)
