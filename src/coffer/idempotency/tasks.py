"""Bounded background jobs for idempotency records."""

from __future__ import annotations

from datetime import datetime

from coffer.db import Database
from coffer.idempotency import service

PURGE_ROUNDS_MAX = 100


def purge_expired_keys(
    database: Database,
    *,
    now: datetime | None = None,
    retention_s: int = service.RETENTION_S_DEFAULT,
    batch_size_max: int = service.PURGE_BATCH_SIZE_MAX,
    rounds_max: int = PURGE_ROUNDS_MAX,
) -> int:
    """Purge expired records in short transactions of at most `batch_size_max` rows, for at
    most `rounds_max` rounds (the next run picks up the rest); how many went."""
    purged = 0
    for _ in range(rounds_max):
        with database.unit_of_work() as session:
            count = service.purge_expired(
                session, now=now, retention_s=retention_s, batch_size_max=batch_size_max
            )
        purged += count
        if count < batch_size_max:
            break
    return purged
