"""Units of work: a linked group with the caller's own statements around it, in one transaction.

The ledger knows nothing of orders, gifts or idempotency records, but a request that moves money
must write those in the same commit as its transfers (DESIGN.md, "A request is one unit of
work"). So a `Work` carries the group and two opaque callables that run inside the transaction
that applies it, whether that is a shared batch (`batch.Batcher.run`) or a transaction of its
own (`apply_work` in the caller's session):

1. the chain head is taken first, so everything below runs one writer at a time across every
   process: a read made here (is this order still pending? was this key answered?) stays true
   until COMMIT;
2. each unit's `before(session)` locks and checks the rows it will change. It must not write.
   It returns a value for `after`, or `Done(answer)` to answer without applying the group (an
   order credited already); any exception that is not the database's refuses that unit alone;
3. the surviving groups are applied together (`posting.apply_groups`), each on its own;
4. each unit whose group committed runs `after(session, value, transfers)`: its domain rows,
   outbox events and idempotency record, built from what the batch decided (transfer ids,
   balances after). What it returns is the unit's answer. It must not fail for a business
   reason (that is `before`'s job): if it raises, the whole batch is rolled back and each unit
   is retried on its own, so only the faulty unit fails.

Units that name the same `claims` (an order id, an idempotency key) never share a batch: the
later one waits for the next, where it sees what the first one did.

Rows that many units write alike (outbox events, gift rows) need not cost a statement each:
an `after` may hand them to `deferred(session, name, flush)`, a list kept for the batch, and
`flush(session, items)` writes them all with one set statement once every unit's `after` has
run, still before COMMIT. Outside a batch it returns None and the caller writes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.errors import LedgerError
from coffer.ledger.posting import apply_groups
from coffer.ledger.types import Group, Transfer

Before = Callable[[Session], Any]
Flush = Callable[[Session, list[Any]], None]
_DEFERRED = "coffer.ledger.deferred"
After = Callable[[Session, Any, list[Transfer]], Any]


@dataclass(frozen=True, slots=True)
class Done:
    """What `before` returns to answer a unit without applying its group."""

    answer: Any


@dataclass(frozen=True, slots=True)
class Work:
    """One unit of work for the writer (see the module docstring)."""

    group: Group | None
    before: Before | None = None
    after: After | None = None
    claims: frozenset[str] = field(default_factory=frozenset)

    def then(self, fn: Callable[[Session, Any], Any]) -> Work:
        """This unit, its answer (whether from `after` or a `Done`) passed through
        `fn(session, answer)` in the same transaction: e.g. to read the balances it left."""
        before, after = self.before, self.after

        def then_before(session: Session) -> Any:
            value = None if before is None else before(session)
            return Done(fn(session, value.answer)) if isinstance(value, Done) else value

        def then_after(session: Session, value: Any, made: list[Transfer]) -> Any:
            return fn(session, made if after is None else after(session, value, made))

        return Work(self.group, then_before if before else None, then_after, self.claims)

    @property
    def plain(self) -> bool:
        """A bare ledger group: no statements of the caller's around it."""
        return self.before is None and self.after is None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A unit's settled result: its answer, or the error that refused it."""

    answer: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.answer


def apply_work(
    session: Session, units: Sequence[Work], *, clock: Callable[[], datetime]
) -> Applied:
    """Run units in the session's transaction; one outcome per unit. The caller commits.

    Raises only for the database's own failures (the transaction is then unusable) and for an
    `after` that failed: the caller rolls back and, for a batch, retries the units one by one.
    """
    conn = session.connection()
    if any(unit.before is not None or unit.group is None for unit in units):
        # Before any `before` (step 1), and before an `after` that writes the ledger in its own
        # statements (a `Writer.call`): the chain head first, always. A batch of groups with
        # plain `after`s needs no extra round trip: `apply_groups` takes it first anyway.
        repo.lock_chain(conn)
    outcomes: list[Outcome | None] = [None] * len(units)
    values: dict[int, Any] = {}
    for index, unit in enumerate(units):
        if unit.before is None:
            continue
        try:
            value = unit.before(session)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            outcomes[index] = Outcome(error=exc)
            continue
        if isinstance(value, Done):
            outcomes[index] = Outcome(answer=value.answer)
        else:
            values[index] = value
    applying = [i for i, unit in enumerate(units) if outcomes[i] is None and unit.group is not None]
    made: dict[int, list[Transfer]] = {}
    last: Transfer | None = None
    if applying:
        groups: list[Group] = []
        for i in applying:
            group = units[i].group
            assert group is not None
            groups.append(group)
        for i, result in zip(applying, apply_groups(conn, groups, clock=clock), strict=True):
            if isinstance(result, LedgerError):
                outcomes[i] = Outcome(error=result)
            else:
                made[i] = result
                for transfer in result:
                    if last is None or transfer.id > last.id:
                        last = transfer
    deferred: dict[str, tuple[Flush, list[Any]]] = {}
    session.info[_DEFERRED] = deferred
    try:
        for index, unit in enumerate(units):
            if outcomes[index] is not None:
                continue
            transfers = made.get(index, [])
            if unit.after is None:
                outcomes[index] = Outcome(answer=transfers)
            else:
                answer = unit.after(session, values.get(index), transfers)
                outcomes[index] = Outcome(answer=answer)
        for flush, items in deferred.values():
            if items:
                flush(session, items)
    finally:
        del session.info[_DEFERRED]
    settled = [o for o in outcomes if o is not None]
    assert len(settled) == len(units)
    return Applied(settled, last)


def deferred(session: Session, name: str, flush: Flush) -> list[Any] | None:
    """The batch's list of `name` items, written by `flush` once every unit's `after` ran;
    None outside a batch (write at once). `name` keys the list: one `flush` per name."""
    batch: dict[str, tuple[Flush, list[Any]]] | None = session.info.get(_DEFERRED)
    if batch is None:
        return None
    if name not in batch:
        batch[name] = (flush, [])
    return batch[name][1]


@dataclass(frozen=True, slots=True)
class Applied:
    outcomes: list[Outcome]
    # The highest-numbered transfer the units made (or replayed): if COMMIT fails, the chain
    # head read afresh says whether the batch landed (batch.Batcher._landed).
    last: Transfer | None


__all__ = [
    "After",
    "Applied",
    "Before",
    "Done",
    "Flush",
    "Outcome",
    "Work",
    "apply_work",
    "deferred",
]
