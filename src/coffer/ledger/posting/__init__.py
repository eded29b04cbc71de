"""The one place where the books change: apply linked groups of operations in one transaction.

Both the in-session calls (`ledger.transfer(session, ...)`) and group commit (`batch.py`) come
here, so there is exactly one implementation of the rules.

How a batch is applied:
1. Shapes are checked first (amounts, types, keys); a bad group fails alone and reads nothing.
2. The chain head is locked. Every writer takes it first, so writers are totally ordered: ids are
   gap-free, time never runs backwards, and the account locks taken next never deadlock.
3. Everything the batch refers to is read at once: idempotency keys, holds, reversed originals,
   and the accounts, locked in id order.
4. Groups are evaluated in order against in-memory copies of the counters. A group's changes
   are staged and merged only if every operation in it passes; a failing group leaves no trace
   and sinks nothing else.
5. The survivors are written with one statement per table; each account once, guarded by the
   counters it was read with, and the database's CHECKs repeat the no-overdraft rule.

The package: `checks` (shapes, and whether a replayed key carries the same content),
`staging` (a batch's state, its counter arithmetic and its write), `evaluation` (the rules of
each operation) and, here, the entry points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection

from coffer.ledger import repository as repo
from coffer.ledger.errors import LedgerError
from coffer.ledger.posting.checks import check_amount, check_group
from coffer.ledger.posting.evaluation import _Batch
from coffer.ledger.posting.staging import GroupResult, _Wants
from coffer.ledger.repository import ChainHead, TransferRow
from coffer.ledger.types import Group, Hold, Transfer


def books_time(head: ChainHead | None, now: datetime) -> datetime:
    """The time a batch writes at: `now`, or the last transfer's time when that is later, so
    time never runs backwards in the books. Every writer and the sweep's look-ahead use it."""
    if head is not None and head.last_created_at is not None and head.last_created_at > now:
        return head.last_created_at
    return now


def apply_groups(
    conn: Connection, groups: Sequence[Group], *, clock: Callable[[], datetime]
) -> list[GroupResult]:
    """Apply each group all-or-nothing in the caller's transaction; one result per group.

    The caller commits. A result is the group's transfers (in operation order) or the error that
    refused it; a refused group wrote nothing.
    """
    results: list[GroupResult | None] = [None] * len(groups)
    encoded: list[list[str]] = [[] for _ in groups]
    valid: list[int] = []
    for index, group in enumerate(groups):
        try:
            encoded[index] = check_group(group)
        except LedgerError as exc:
            results[index] = exc
        else:
            valid.append(index)
    if valid:
        chosen = [groups[i] for i in valid]
        wants = _Wants.of(chosen)
        held: dict[int, Hold] = {}
        locked: dict[int, repo.AccountState] = {}
        if wants.hold_ids or wants.transfer_ids:
            # Holds and originals name more accounts: read them first, then lock every
            # account at once, in id order. The chain and the holds: one round trip.
            head, held = repo.lock_chain_and_holds(conn, wants.hold_ids)
        else:
            # Every account is known up front: one round trip takes both locks.
            head, locked = repo.lock_chain_and_accounts(conn, wants.account_ids)
        batch = _Batch(conn, head, books_time(head, clock()))
        batch.accounts.update(locked)
        batch.holds.update(held)
        batch.load(wants)
        staged_rows: dict[int, list[Transfer | TransferRow]] = {}
        for index in valid:
            outcome = batch.apply_group(groups[index], encoded[index])
            if isinstance(outcome, LedgerError):
                results[index] = outcome
            else:
                staged_rows[index] = outcome
        written = batch.write()
        for index, rows in staged_rows.items():
            results[index] = [written[r.id] if isinstance(r, TransferRow) else r for r in rows]
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def expire_due_holds(conn: Connection, *, clock: Callable[[], datetime], limit: int) -> int:
    """Release up to `limit` holds whose timeout has passed; returns how many."""
    head = repo.lock_chain(conn)
    batch = _Batch(conn, head, books_time(head, clock()))
    count = batch.expire_due(limit=limit)
    batch.write()
    return count


__all__ = ["GroupResult", "apply_groups", "books_time", "check_amount", "expire_due_holds"]
