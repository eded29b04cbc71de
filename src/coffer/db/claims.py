"""Claiming a job's rows, so that several processes share the work and none does it twice.

A job that calls a provider for each row (a webhook retry, a refund to resume or reconcile)
must not have two processes ask about the same row at once. `claim` takes the due rows in one
short transaction, `FOR UPDATE SKIP LOCKED` on PostgreSQL (a row another process is claiming is
passed over, not waited for; SQLite's write transaction already excludes every other writer),
and moves each row's lease column past `now`, so the row is not due again until the lease runs
out: long enough for the claimer to finish, short enough that a process that died mid-job
leaves it for the next run. The work itself happens after the commit, outside any transaction.

Jobs whose whole move is decided inside the writer (hold expiry, escrow auto-release) claim
nothing: their units re-check the row under the ledger's write lock, which already serialises
them across processes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Select, Table, update

from coffer.db.engine import Database

BATCH_SIZE_MAX = 1_000


def claim(
    database: Database,
    due: Select[Any],
    *,
    table: Table,
    lease: Column[Any],
    until: datetime,
) -> list[Any]:
    """The ids `due` selects (its first column is `table`'s id; it carries its own LIMIT),
    locked and leased to this process until `until`; returns them in `due`'s order."""
    assert due._limit_clause is not None, "a claim takes a bounded batch"
    with database.unit_of_work() as session:
        ids = [row[0] for row in session.execute(due.with_for_update(skip_locked=True))]
        assert len(ids) <= BATCH_SIZE_MAX
        if ids:
            session.execute(update(table).where(table.c.id.in_(ids)).values({lease.name: until}))
    return ids


__all__ = ["claim"]
