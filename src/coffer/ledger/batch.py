"""Group commit: transfers submitted concurrently share one database transaction.

A writer thread takes whatever is queued (up to `batch_size_max`, waiting at most `wait_max_s`
for more once the first arrives, or, by default, gathering for up to `gather_max_s` while callers
are still arriving), applies it with `posting.apply_groups` and commits once. While one batch
commits, the next one gathers, so the commit's cost is spread over every transfer in it, and a
hot account's row is written once per batch. Each group succeeds or fails on its own.

If the database itself fails (a lost connection, a constraint the checks should have caught),
the batch is retried one group at a time, so one bad group can never sink the others; a group
whose own transaction fails gets `LedgerUnavailable`, and its outcome is then unknown only if the
failure struck during COMMIT (retry it with the same idempotency key: it will not be applied twice).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.errors import LedgerBusy, LedgerError, LedgerUnavailable
from coffer.ledger.posting import GroupResult, apply_groups
from coffer.ledger.service import utc_now
from coffer.ledger.types import DEFAULT_SOURCE, Group, Operation, Transfer

BATCH_SIZE_MAX = 1_000
QUEUE_SIZE_MAX = 10_000
WAIT_MAX_S = 0.0
SUBMIT_TIMEOUT_S = 5.0
# Gathering (see `Batcher._gather`): look again every GATHER_GAP_S while callers keep arriving,
# for at most GATHER_MAX_S. Measured here with 16 and 64 callers: batches twice as large and
# about a third more transfers a second; a lone caller never waits.
GATHER_GAP_S = 0.000_1
GATHER_MAX_S = 0.002
RESULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BatchStats:
    batches: int
    groups: int
    largest_batch: int
    retried_batches: int


class _Item:
    """One queued group. `done` is held until the group is settled: `execute` waits on it, which
    costs one lock per transfer where a Future's condition variable costs several."""

    __slots__ = ("done", "future", "group", "result")

    def __init__(self, group: Group, future: Future[list[Transfer]] | None) -> None:
        self.group = group
        self.future = future  # only for `submit`
        self.result: GroupResult | None = None
        self.done = threading.Lock()
        self.done.acquire()


class Batcher:
    """Coalesce concurrent ledger writes into shared transactions.

    `session_factory` makes a Session whose transaction takes the ledger's write lock the way
    every other writer does (SQLite: BEGIN IMMEDIATE). When its sessions are bound to an Engine,
    the writer holds one connection of that engine for all its batches (one of the pool's).
    `gather_max_s=0` turns gathering off. Use as a context manager, or call `start()` and
    `close()`.
    """

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_size_max: int = QUEUE_SIZE_MAX,
        wait_max_s: float = WAIT_MAX_S,
        gather_max_s: float = GATHER_MAX_S,
        clock: Callable[[], datetime] = utc_now,
        name: str = "ledger-batcher",
    ) -> None:
        assert 0 < batch_size_max <= 100_000
        assert 0 < queue_size_max <= 1_000_000
        assert 0.0 <= wait_max_s <= 1.0
        assert 0.0 <= gather_max_s <= 1.0
        self._session_factory = session_factory
        self._batch_size_max = batch_size_max
        self._wait_max_s = wait_max_s
        self._gather_max_s = gather_max_s
        self._last_batch_size = 0
        self._clock = clock
        # A bounded queue the writer drains a batch at a time under one lock acquisition.
        self._queue_size_max = queue_size_max
        self._pending: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # The writer's own connection (see `_transaction`); None until the first batch, and for
        # session factories that are not bound to an Engine.
        self._connection: Connection | None = None
        self._engine: Engine | None = None
        self._engine_known = False
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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._not_empty.notify()
            self._not_full.notify_all()
        if self._thread.is_alive():
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
        future: Future[list[Transfer]] = Future()
        self._put(_Item(Group(tuple(operations), source), future), timeout_s)
        return future

    def execute(
        self,
        operations: Sequence[Operation],
        *,
        source: str = DEFAULT_SOURCE,
        timeout_s: float = RESULT_TIMEOUT_S,
    ) -> list[Transfer]:
        """Submit one linked group and wait for it: its transfers, or the error that refused it.

        Raises TimeoutError if the group is not settled within `timeout_s` (it may still commit).
        """
        item = _Item(Group(tuple(operations), source), None)
        self._put(item, SUBMIT_TIMEOUT_S)
        if not item.done.acquire(timeout=timeout_s):
            raise TimeoutError(f"the ledger did not settle the transfer within {timeout_s} s")
        result = item.result
        if isinstance(result, LedgerError):
            raise result
        assert result is not None
        return result

    def _put(self, item: _Item, timeout_s: float) -> None:
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("the batcher is closed")
            if len(self._pending) >= self._queue_size_max:
                deadline = time.monotonic() + timeout_s
                while len(self._pending) >= self._queue_size_max:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        raise LedgerBusy("the ledger's queue is full; retry shortly")
                    self._not_full.wait(remaining)
            self._pending.append(item)
            self._not_empty.notify()

    # -- the writer -------------------------------------------------------------------------

    def _take(self) -> list[_Item]:
        """The next batch: whatever is queued (up to `batch_size_max`), waiting at most
        `wait_max_s` for more once the first arrives (else gathering, see `_gather`); empty
        once closed and drained."""
        pending = self._pending
        with self._lock:
            while not pending:
                if self._closed:
                    return []
                self._not_empty.wait()
            if self._wait_max_s > 0 and len(pending) < self._batch_size_max:
                deadline = time.monotonic() + self._wait_max_s
                while len(pending) < self._batch_size_max and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._not_empty.wait(remaining)
            elif self._gather_max_s > 0 and self._last_batch_size > 1:
                self._gather()
            was_full = len(pending) >= self._queue_size_max
            count = min(len(pending), self._batch_size_max)
            self._last_batch_size = count
            items = [pending.popleft() for _ in range(count)]
            if was_full:
                self._not_full.notify_all()
        return items

    def _gather(self) -> None:
        """Let the batch grow while callers are still arriving (call with the lock held).

        The callers of the last batch were woken when it committed and are submitting again;
        taking only those already queued splits them into two half-size batches that take
        turns, each paying a batch's fixed costs (round trips, statements, commit). Sleeping
        a little, and again while more arrived, lets them join: and the sleep hands the GIL
        to them, which they need to submit. Only after a batch of more than one group: a lone
        caller would wait for nobody.
        """
        pending = self._pending
        deadline = time.monotonic() + self._gather_max_s
        seen = len(pending)
        while seen < self._batch_size_max and not self._closed:
            self._lock.release()
            try:
                time.sleep(GATHER_GAP_S)
            finally:
                self._lock.acquire()
            if len(pending) == seen or time.monotonic() >= deadline:
                return
            seen = len(pending)

    def _run(self) -> None:
        try:
            while True:
                items = self._take()
                if not items:
                    return
                self._commit(items)
        finally:
            if self._connection is not None:
                self._close_connection(self._connection)

    def _commit(self, items: list[_Item]) -> None:
        # A caller may cancel a queued future (asyncio does, when the request awaiting it is
        # cancelled): skip that group. The rest are marked running so they can no longer be
        # cancelled; setting a cancelled future's result would raise and kill this thread.
        items = [i for i in items if i.future is None or i.future.set_running_or_notify_cancel()]
        if not items:
            return
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
        conn = self._writer_connection()
        if conn is None:
            with self._session_factory() as session:
                try:
                    results = apply_groups(session.connection(), groups, clock=self._clock)
                    session.commit()
                except BaseException:
                    with contextlib.suppress(SQLAlchemyError):
                        session.rollback()
                    raise
            return results
        # The writer keeps one connection of the factory's engine for all its batches: a
        # session per batch would check a connection out of the pool (with its liveness ping,
        # one more round trip) and back in every time. Its transactions begin as the
        # engine's always do (SQLite: BEGIN IMMEDIATE, from the engine's "begin" event).
        transaction = conn.begin()
        try:
            results = apply_groups(conn, groups, clock=self._clock)
            transaction.commit()
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):
                transaction.rollback()
            # Whatever failed may have left the connection in a state no rollback repairs (a
            # broken pipeline, a half-read result): never reuse it; the next batch opens another.
            self._connection = None
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
                conn.close()
            raise
        return results

    def _writer_connection(self) -> Connection | None:
        if not self._engine_known:
            with self._session_factory() as session:
                bind = session.get_bind()
            # Only a factory bound to an Engine: a session bound to a Connection (a test's
            # outer transaction, say) must keep writing through that connection.
            self._engine = bind if isinstance(bind, Engine) else None
            self._engine_known = True
        if self._engine is None:
            return None
        if self._connection is not None and self._connection.invalidated:
            # The database went away under it: start again on a fresh connection.
            self._close_connection(self._connection)
            self._connection = None
        if self._connection is None:
            conn = self._engine.connect()
            try:
                repo.open_writer_connection(conn)
            except BaseException:
                conn.close()
                raise
            self._connection = conn
        return self._connection

    @staticmethod
    def _close_connection(conn: Connection) -> None:
        with contextlib.suppress(SQLAlchemyError):
            if not conn.invalidated:
                if conn.in_transaction():
                    conn.rollback()
                repo.close_writer_connection(conn)
        with contextlib.suppress(SQLAlchemyError):
            conn.close()

    @staticmethod
    def _settle(item: _Item, result: GroupResult) -> None:
        item.result = result
        future = item.future
        if future is not None:
            if isinstance(result, LedgerError):
                future.set_exception(result)
            else:
                future.set_result(result)
        item.done.release()


def _unavailable(exc: BaseException) -> LedgerError:
    if isinstance(exc, LedgerError):
        return exc
    error = LedgerUnavailable(
        "the ledger could not commit this transfer", reason=type(exc).__name__
    )
    error.__cause__ = exc
    return error
