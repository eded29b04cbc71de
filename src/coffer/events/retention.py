"""How long the outbox keeps events, and how a stream learns that a cursor fell out of it.

Events older than the retention (`COFFER_EVENT_RETENTION_DAYS`, 30 by default) are purged by a
bounded job (`events.purge`, in `coffer serve` and `coffer tasks run`). It deletes a *prefix* of
ids only, the longest run of the oldest events whose `created_at` is before the cut-off, and
records the last id it deleted as the horizon. It always keeps the newest event: SQLite gives a
new row the highest id there is plus one, so an emptied table would hand out purged ids again,
and ids must only grow. So the rule a stream applies is exact: every
event with an id above the horizon is still in the table, and a cursor below the horizon may
have missed some, which the stream answers with `reset` (the client re-reads its balance).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from coffer.db import dialect
from coffer.events.tables import event_retention, events

_ROW_ID = 1
PURGE_BATCH_SIZE_MAX = 10_000


def horizon(session: Session) -> int:
    """The highest purged event id (0 before the first purge): ids above it are all kept."""
    found = session.execute(
        select(event_retention.c.purged_through_id).where(event_retention.c.id == _ROW_ID)
    ).scalar()
    return int(found or 0)


def purge(
    session: Session,
    *,
    before: datetime,
    now: datetime,
    batch_size_max: int = PURGE_BATCH_SIZE_MAX,
    keep_from_id: int | None = None,
) -> int:
    """Delete up to `batch_size_max` of the oldest events created before `before`, as a prefix
    of ids, and move the horizon to the last one; returns how many were deleted. Events from
    `keep_from_id` on are kept whatever their age (a reader above still needs them)."""
    assert 0 < batch_size_max <= 100_000
    floor = horizon(session)
    rows = session.execute(
        select(events.c.id, events.c.created_at)
        .where(events.c.id > floor)
        .order_by(events.c.id)
        .limit(batch_size_max)
    ).all()
    newest = session.execute(select(func.max(events.c.id))).scalar() or 0
    cut = floor
    for row in rows:
        if row.created_at >= before or row.id >= newest:
            break  # a prefix only, and never the newest event (see the module docstring)
        if keep_from_id is not None and row.id >= keep_from_id:
            break  # a prefix only, and never the newest event (see the module docstring)
        cut = row.id
    if cut == floor:
        return 0
    deleted = session.connection().execute(delete(events).where(events.c.id <= cut)).rowcount
    statement = dialect.insert(session, event_retention).values(
        id=_ROW_ID, purged_through_id=cut, purged_at=now
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["id"]))
    # Another process purging at the same time never moves the horizon back.
    session.execute(
        update(event_retention)
        .where(event_retention.c.id == _ROW_ID, event_retention.c.purged_through_id < cut)
        .values(purged_through_id=cut, purged_at=now)
    )
    return int(deleted)


__all__ = ["PURGE_BATCH_SIZE_MAX", "horizon", "purge"]
