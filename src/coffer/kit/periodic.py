"""A small scheduler for bounded background jobs (sweeps, retries, purges), a thread per job.

Each job runs at its own interval in a thread of its own, so a slow one (a provider that takes
its timeout to answer) delays only itself; one failing run is logged and the job is tried again
at its next turn. Jobs must be bounded (a batch size, attempts, timeouts): the scheduler never
interrupts one. `stop()` returns once every current run has finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]


class Periodic:
    def __init__(self, jobs: list[Job], *, name: str = "coffer-periodic") -> None:
        assert all(job.interval_s > 0 for job in jobs)
        assert len({job.name for job in jobs}) == len(jobs), "job names are unique"
        self._jobs = jobs
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(job,), name=f"{name}:{job.name}", daemon=True)
            for job in jobs
        ]

    @property
    def names(self) -> list[str]:
        return [job.name for job in self._jobs]

    def start(self) -> Periodic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s)

    def run_all_now(self) -> None:
        """Run every job once, in order (for tests, the demo and `coffer tasks run`)."""
        for job in self._jobs:
            self._run(job)

    def run_now(self, name: str) -> object:
        """Run one job once and return what it returned (KeyError for an unknown name);
        unlike the schedule, its failure is raised to the caller."""
        job = next((j for j in self._jobs if j.name == name), None)
        if job is None:
            raise KeyError(name)
        return job.run()

    def _loop(self, job: Job) -> None:
        # The first run waits one interval: start-up has enough to do.
        while not self._stop.wait(job.interval_s):
            self._run(job)

    @staticmethod
    def _run(job: Job) -> None:
        try:
            job.run()
        except Exception:  # one job's failure must not stop it, or the others
            log.exception("periodic job %s failed", job.name)
