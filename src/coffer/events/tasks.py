"""The outbox's bounded background job: purge what is past retention (events/retention.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from coffer.db import Database
from coffer.events.retention import PURGE_BATCH_SIZE_MAX, purge
from coffer.kit.clock import Clock

PURGE_ROUNDS_MAX = 10


def purge_old_events(
    database: Database,
    clock: Clock,
    *,
    retention_days: int,
    batch_size_max: int = PURGE_BATCH_SIZE_MAX,
    rounds_max: int = PURGE_ROUNDS_MAX,
    keep_from: Callable[[Session], int | None] | None = None,
) -> int:
    """Delete events older than `retention_days`, a batch per transaction, at most
    `rounds_max` batches a run; returns how many were deleted. `keep_from(session)` names the
    oldest event a reader above the outbox still needs (the outbound webhooks' fan-out)."""
    assert retention_days > 0 and rounds_max > 0
    now = clock()
    before = now - timedelta(days=retention_days)
    deleted = 0
    for _ in range(rounds_max):
        with database.unit_of_work() as session:
            keep = None if keep_from is None else keep_from(session)
            count = purge(
                session, before=before, now=now, batch_size_max=batch_size_max, keep_from_id=keep
            )
        deleted += count
        if count < batch_size_max:
            break
    return deleted


__all__ = ["purge_old_events"]
