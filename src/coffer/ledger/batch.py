"""Group commit: transfers submitted concurrently share one database transaction.

A writer thread takes whatever is queued (up to `batch_size_max`, waiting at most `wait_max_s`
for more once the first arrives), applies it with `posting.apply_groups` and commits once. While
one batch commits, the next one gathers, so the commit's cost is spread over every transfer in
it, and a hot account's row is written once per batch. Each group succeeds or fails on its own.

If the database itself fails (a lost connection, a constraint the checks should have caught),
the batch is retried one group at a time, so one bad group can never sink the others; a group
whose own transaction fails gets `LedgerUnavailable`, and its outcome is then unknown only if the
failure struck during COMMIT (retry it with the same idempotency key: it will not be applied twice).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from coffer.ledger.errors import LedgerBusy, LedgerError, LedgerUnavailable
from coffer.ledger.posting import GroupResult, apply_groups
from coffer.ledger.service import utc_now
from coffer.ledger.types import DEFAULT_SOURCE, Group, Operation, Transfer

BATCH_SIZE_MAX = 1_000
QUEUE_SIZE_MAX = 10_000
WAIT_MAX_S = 0.0
SUBMIT_TIMEOUT_S = 5.0
RESULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BatchStats:
    batches: int
    groups: int
    largest_batch: int
    retried_batches: int


class _Item:
    __slots__ = ("future", "group")

    def __init__(self, group: Group) -> None:
        self.group = group
        self.future: Future[list[Transfer]] = Future()


_STOP = object()


class Batcher:
    """Coalesce concurrent ledger writes into shared transactions.

    `session_factory` makes a Session whose transaction takes the ledger's write lock the way
    every other writer does (SQLite: BEGIN IMMEDIATE). Use as a context manager, or call
    `start()` and `close()`.
    """

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_size_max: int = QUEUE_SIZE_MAX,
        wait_max_s: float = WAIT_MAX_S,
        clock: Callable[[], datetime] = utc_now,
        name: str = "ledger-batcher",
    ) -> None:
        assert 0 < batch_size_max <= 100_000
        assert 0 < queue_size_max <= 1_000_000
        assert 0.0 <= wait_max_s <= 1.0
        self._session_factory = session_factory
        self._batch_size_max = batch_size_max
        self._wait_max_s = wait_max_s
        self._clock = clock
        self._queue: queue.Queue[_Item | object] = queue.Queue(maxsize=queue_size_max)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._batches = 0
        self._groups = 0
        self._largest = 0
        self._retried = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    def __enter__(self) -> Batcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._batches, self._groups, self._largest, self._retried)

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self,
        operations: Sequence[Operation],
        *,
        source: str = DEFAULT_SOURCE,
        timeout_s: float = SUBMIT_TIMEOUT_S,
    ) -> Future[list[Transfer]]:
        """Queue one linked group; the future resolves after its batch commits."""
        if self._closed:
            raise LedgerUnavailable("the batcher is closed")
        item = _Item(Group(tuple(operations), source))
        try:
            self._queue.put(item, timeout=timeout_s)
        except queue.Full as exc:
            raise LedgerBusy("the ledger's queue is full; retry shortly") from exc
        return item.future

    def execute(
        self,
        operations: Sequence[Operation],
        *,
        source: str = DEFAULT_SOURCE,
        timeout_s: float = RESULT_TIMEOUT_S,
    ) -> list[Transfer]:
        """Submit one linked group and wait for it: its transfers, or the error that refused it."""
        return self.submit(operations, source=source).result(timeout=timeout_s)

    # -- the writer -------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Item)
            items = [first]
            deadline = time.monotonic() + self._wait_max_s
            while len(items) < self._batch_size_max:
                try:
                    remaining = deadline - time.monotonic()
                    nxt = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                assert isinstance(nxt, _Item)
                items.append(nxt)
            self._commit(items)

    def _commit(self, items: list[_Item]) -> None:
        self._batches += 1
        self._groups += len(items)
        self._largest = max(self._largest, len(items))
        try:
            results = self._transaction([item.group for item in items])
        except Exception as exc:
            if len(items) == 1:
                self._settle(items[0], _unavailable(exc))
                return
            # Something no check caught failed the whole transaction: isolate it by retrying
            # each group on its own, so one group's fault stays its own.
            self._retried += 1
            for item in items:
                try:
                    (result,) = self._transaction([item.group])
                except Exception as single:
                    result = _unavailable(single)
                self._settle(item, result)
            return
        for item, result in zip(items, results, strict=True):
            self._settle(item, result)

    def _transaction(self, groups: list[Group]) -> list[GroupResult]:
        with self._session_factory() as session:
            try:
                results = apply_groups(session.connection(), groups, clock=self._clock)
                session.commit()
            except BaseException:
                with contextlib.suppress(SQLAlchemyError):
                    session.rollback()
                raise
        return results

    @staticmethod
    def _settle(item: _Item, result: GroupResult) -> None:
        if isinstance(result, LedgerError):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)


def _unavailable(exc: BaseException) -> LedgerError:
    if isinstance(exc, LedgerError):
        return exc
    error = LedgerUnavailable(
        "the ledger could not commit this transfer", reason=type(exc).__name__
    )
    error.__cause__ = exc
    return error
