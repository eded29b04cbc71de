"""Group commit: transfers submitted concurrently share one database transaction.

A writer thread takes whatever is queued (up to `batch_size_max`, waiting at most `wait_max_s`
for more once the first arrives, or, by default, gathering for up to `gather_max_s` while callers
are still arriving), applies it with `posting.apply_groups` and commits once. While one batch
commits, the next one gathers, so the commit's cost is spread over every transfer in it, and a
hot account's row is written once per batch. Each group succeeds or fails on its own.

Besides bare groups it commits units of work (`work.Work`: a group with the caller's own rows
around it, `run` / `submit_work`), so a request's money, domain rows, events and idempotency
record share one batch's COMMIT.

If the database itself fails (a lost connection, a constraint the checks should have caught),
the batch is retried one unit at a time, so one bad unit can never sink the others. If COMMIT
itself raises, the outcome is unknown to the database driver but not to us: the writer reads the
chain head on a fresh connection, and if it shows the batch's last transfer (same id, same hash)
the batch landed and every caller gets its answer; if not, nothing landed and the units are
retried one by one. Nobody is answered before that is known, so nothing is applied twice and
nothing is reported that did not commit. A batch that wrote no transfer leaves nothing to read
back: its callers get `LedgerUnavailable` (retry with the same keys; the writes are guarded).
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
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.errors import LedgerBusy, LedgerError, LedgerUnavailable
from coffer.ledger.service import utc_now
from coffer.ledger.tables import transfers as transfers_table
from coffer.ledger.types import DEFAULT_SOURCE, Group, Operation, Transfer
from coffer.ledger.work import Outcome, Work, apply_work

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
    ambiguous_commits: int = 0


class _Item:
    """One queued unit. `done` is held until the unit is settled: `execute` waits on it, which
    costs one lock per transfer where a Future's condition variable costs several."""

    __slots__ = ("done", "future", "result", "work")

    def __init__(self, work: Work, future: Future[Any] | None) -> None:
        self.work = work
        self.future = future  # only for `submit` and `submit_work`
        self.result: Outcome | None = None
        self.done = threading.Lock()
        self.done.acquire()


class _CommitUnknown(Exception):
    """COMMIT raised and nothing can be read back to say whether the batch landed."""


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
        on_commit: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
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
        # Told after every COMMIT that landed, on the writer's thread: it must only signal
        # (e.g. wake the event streams), never block or write.
        self._on_commit = on_commit
        # Told after every batch is settled, on the writer's thread, with its size (units) and
        # the seconds from BEGIN until its answers were known (retries included): for figures
        # the caller keeps (the ledger keeps none of its own beyond `stats`). Must not block.
        self._on_batch = on_batch
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
        self._ambiguous = 0

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
        return BatchStats(
            self._batches, self._groups, self._largest, self._retried, self._ambiguous
        )

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self,
        operations: Sequence[Operation],
        *,
        source: str = DEFAULT_SOURCE,
        timeout_s: float = SUBMIT_TIMEOUT_S,
    ) -> Future[list[Transfer]]:
        """Queue one linked group; the future resolves after its batch commits."""
        return self.submit_work(Work(Group(tuple(operations), source)), timeout_s=timeout_s)

    def submit_work(self, work: Work, *, timeout_s: float = SUBMIT_TIMEOUT_S) -> Future[Any]:
        """Queue one unit of work; the future resolves (or raises) once its batch committed."""
        future: Future[Any] = Future()
        self._put(_Item(work, future), timeout_s)
        return future

    def run(self, work: Work, *, timeout_s: float = RESULT_TIMEOUT_S) -> Any:
        """Submit one unit of work and wait for its answer (or the error that refused it).

        Raises TimeoutError if the unit is not settled within `timeout_s` (it may still commit).
        """
        item = _Item(work, None)
        self._put(item, SUBMIT_TIMEOUT_S)
        if not item.done.acquire(timeout=timeout_s):
            raise TimeoutError(f"the ledger did not settle the unit within {timeout_s} s")
        assert item.result is not None
        return item.result.unwrap()

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
        item = _Item(Work(Group(tuple(operations), source)), None)
        self._put(item, SUBMIT_TIMEOUT_S)
        if not item.done.acquire(timeout=timeout_s):
            raise TimeoutError(f"the ledger did not settle the transfer within {timeout_s} s")
        assert item.result is not None
        made: list[Transfer] = item.result.unwrap()
        return made

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
            items = self._defer_claimed(items)
            if was_full:
                self._not_full.notify_all()
        return items

    def _defer_claimed(self, items: list[_Item]) -> list[_Item]:
        """Units that claim what an earlier unit of this batch claims wait for the next batch
        (call with the lock held): there they see what the first one did."""
        if all(not item.work.claims for item in items):
            return items
        taken: set[str] = set()
        kept: list[_Item] = []
        deferred: list[_Item] = []
        for item in items:
            claims = item.work.claims
            if claims and not taken.isdisjoint(claims):
                deferred.append(item)
            else:
                taken.update(claims)
                kept.append(item)
        self._pending.extendleft(reversed(deferred))
        return kept

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
        # cancelled): skip that unit. The rest are marked running so they can no longer be
        # cancelled; setting a cancelled future's result would raise and kill this thread.
        items = [i for i in items if i.future is None or i.future.set_running_or_notify_cancel()]
        if not items:
            return
        self._batches += 1
        self._groups += len(items)
        self._largest = max(self._largest, len(items))
        started = time.perf_counter()
        try:
            self._settle_batch(items)
        finally:
            if self._on_batch is not None:
                with contextlib.suppress(Exception):  # a figure must never fail a batch
                    self._on_batch(len(items), time.perf_counter() - started)

    def _settle_batch(self, items: list[_Item]) -> None:
        try:
            outcomes = self._transaction([item.work for item in items])
        except _CommitUnknown as exc:
            for item in items:
                self._settle(item, Outcome(error=_unavailable(exc)))
            return
        except Exception as exc:
            if len(items) == 1:
                self._settle(items[0], Outcome(error=_failed(exc)))
                return
            # Something no check caught failed the whole transaction: isolate it by retrying
            # each unit on its own, so one unit's fault stays its own.
            self._retried += 1
            for item in items:
                try:
                    (outcome,) = self._transaction([item.work])
                except Exception as single:
                    outcome = Outcome(error=_failed(single))
                self._settle(item, outcome)
            return
        for item, outcome in zip(items, outcomes, strict=True):
            self._settle(item, outcome)

    def _transaction(self, units: list[Work]) -> list[Outcome]:
        conn = self._writer_connection()
        if conn is None:
            with self._session_factory() as session:
                try:
                    applied = apply_work(session, units, clock=self._clock)
                    session.commit()
                except BaseException:
                    with contextlib.suppress(SQLAlchemyError):
                        session.rollback()
                    raise
            self._committed()
            return applied.outcomes
        # The writer keeps one connection of the factory's engine for all its batches: a
        # session per batch would check a connection out of the pool (with its liveness ping,
        # one more round trip) and back in every time. Its transactions begin as the
        # engine's always do (SQLite: BEGIN IMMEDIATE, from the engine's "begin" event).
        transaction = conn.begin()
        committing = False
        try:
            # Units' own statements run through a Session on the writer's connection, inside
            # its transaction (the Session joins it and never commits it).
            with Session(bind=conn) as session:
                applied = apply_work(session, units, clock=self._clock)
            committing = True
            self._commit_transaction(transaction)
        except BaseException as exc:
            if transaction.is_active:
                with contextlib.suppress(SQLAlchemyError):
                    transaction.rollback()
            # Whatever failed may have left the connection in a state no rollback repairs (a
            # broken pipeline, a half-read result): never reuse it; the next batch opens another.
            self._connection = None
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
                conn.close()
            if committing and isinstance(exc, Exception):
                self._ambiguous += 1
                if applied.last is None:
                    raise _CommitUnknown("COMMIT failed and the batch wrote no transfer") from exc
                if self._landed(applied.last):
                    self._committed()
                    return applied.outcomes  # it landed: every answer stands
            raise
        self._committed()
        return applied.outcomes

    def _committed(self) -> None:
        if self._on_commit is not None:
            # A signal that fails must not turn a committed batch into a failed one.
            with contextlib.suppress(Exception):
                self._on_commit()

    def _commit_transaction(self, transaction: Any) -> None:
        """COMMIT the batch (a seam for tests that make COMMIT land and then raise)."""
        transaction.commit()

    def _landed(self, last: Transfer) -> bool:
        """Whether a batch whose COMMIT raised is in the books: the chain head, read on a fresh
        connection, has reached its last transfer and that transfer has the same hash."""
        assert self._engine is not None
        try:
            with self._engine.connect() as fresh:
                head = repo.read_chain(fresh)
                if head is None or head.last_transfer_id < last.id:
                    return False
                stored = fresh.execute(
                    select(transfers_table.c.hash).where(transfers_table.c.id == last.id)
                ).scalar()
        except SQLAlchemyError as exc:
            # The database is still away: nobody can be told the truth yet.
            raise _CommitUnknown("COMMIT failed and the database cannot be read back") from exc
        return stored is not None and bytes(stored) == last.hash

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
    def _settle(item: _Item, outcome: Outcome) -> None:
        item.result = outcome
        future = item.future
        if future is not None:
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.answer)
        item.done.release()


def _failed(exc: BaseException) -> BaseException:
    """What a unit whose own transaction failed is told: the database's failures become
    `LedgerUnavailable`; a unit's own error (raised by its `after`) is its answer."""
    if isinstance(exc, SQLAlchemyError | _CommitUnknown):
        return _unavailable(exc)
    return exc


def _unavailable(exc: BaseException) -> LedgerError:
    if isinstance(exc, LedgerError):
        return exc
    error = LedgerUnavailable(
        "the ledger could not commit this transfer", reason=type(exc).__name__
    )
    error.__cause__ = exc
    return error
