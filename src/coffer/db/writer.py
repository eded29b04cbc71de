"""The writer every money-moving request goes through (DESIGN.md, "A request is one unit of work").

A request plans in its own thread (reads, validation, provider calls), then hands the writer one
`ledger.Work`: its ledger group and the rows it writes around it. With group commit on (the
default) the units of many concurrent requests share one transaction and one COMMIT on the
ledger's `Batcher`; with it off (`COFFER_GROUP_COMMIT=false`, for comparison in `coffer bench`)
each unit runs in a transaction of its own in the caller's thread, the way a request did before.
Either way one function applies it (`ledger.apply_work`), so the rules cannot drift apart.

    answer = writer.run(work)              # from a sync route or a job
    answer = await writer.run_async(work)  # from an async route: holds no thread while it waits

The Batcher's thread starts on first use, in the process that uses it (so a server that forks
its workers after building the app gives each worker its own writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer import ledger, metrics
from coffer.db.engine import Database
from coffer.kit.clock import utc_now
from coffer.ledger.batch import BATCH_SIZE_MAX, QUEUE_SIZE_MAX

RESULT_TIMEOUT_S = 30.0


class Writer:
    """Commits units of work, in shared batches or one transaction each."""

    def __init__(
        self,
        database: Database,
        *,
        group_commit: bool = True,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_size_max: int = QUEUE_SIZE_MAX,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._database = database
        # Called after every COMMIT of a unit or batch (the event streams' wake-up, see
        # events/live.py); it only signals.
        self._on_commit = on_commit
        self.group_commit = group_commit
        self._batch_size_max = batch_size_max
        self._queue_size_max = queue_size_max
        self._clock = clock
        self._batcher: ledger.Batcher | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _running(self) -> ledger.Batcher:
        batcher = self._batcher
        if batcher is not None:
            return batcher
        with self._lock:
            if self._closed:
                raise ledger.LedgerUnavailable("the writer is closed")
            if self._batcher is None:
                self._batcher = ledger.Batcher(
                    self._database.writer,
                    batch_size_max=self._batch_size_max,
                    queue_size_max=self._queue_size_max,
                    clock=self._clock,
                    name="coffer-writer",
                    on_commit=self._on_commit,
                    on_batch=_observe_batch,
                ).start()
            return self._batcher

    def run(self, work: ledger.Work, *, timeout_s: float = RESULT_TIMEOUT_S) -> Any:
        """Commit one unit and return its answer; raises the error that refused it."""
        if not self.group_commit:
            return self._run_alone(work)
        return self._running().run(work, timeout_s=timeout_s)

    async def run_async(self, work: ledger.Work) -> Any:
        """`run` for async routes: the event loop waits on the batch, no thread is held."""
        if not self.group_commit:
            return await asyncio.to_thread(self._run_alone, work)
        return await asyncio.wrap_future(self._running().submit_work(work))

    def call(self, fn: Callable[[Session], Any]) -> Any:
        """Run `fn(session)` in the writer's transaction, under the ledger's write lock, and
        return what it returns once that committed. For work written as `f(session, ...)`
        service calls (they may call the ledger in the session): it shares a batch's COMMIT
        with the other units. If `fn` raises, the batch is retried unit by unit and `fn`'s
        error is its caller's answer; nothing it wrote stays."""
        return self.run(ledger.Work(None, after=lambda session, _, __: fn(session)))

    async def call_async(self, fn: Callable[[Session], Any]) -> Any:
        return await self.run_async(ledger.Work(None, after=lambda session, _, __: fn(session)))

    def _run_alone(self, work: ledger.Work) -> Any:
        started = time.perf_counter()
        try:
            with self._database.unit_of_work() as session:
                (outcome,) = ledger.apply_work(session, [work], clock=self._clock).outcomes
                # A refused unit wrote nothing (`before` does not write), but roll back
                # regardless.
                return outcome.unwrap()
        finally:
            _observe_batch(1, time.perf_counter() - started)
            if self._on_commit is not None:
                with contextlib.suppress(Exception):  # a spare wake-up costs one read
                    self._on_commit()

    @property
    def stats(self) -> ledger.BatchStats | None:
        return None if self._batcher is None else self._batcher.stats

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()


def _observe_batch(size: int, elapsed_s: float) -> None:
    """The writer's figures for `GET /metrics` (the ledger keeps none): on the Batcher's
    thread after each batch settled, or in the caller's after a unit committed alone."""
    metrics.writer_batch_size.observe(size)
    metrics.writer_commit_duration.observe(elapsed_s)


__all__ = ["Writer"]
