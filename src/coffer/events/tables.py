"""The outbox: every change a client cares about, written in the unit of work that made it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from coffer.db.base import UTCDateTime, metadata

events = Table(
    "events",
    metadata,
    # Grows in commit order across Coffer: events are written by the writer, one batch at a time
    # under the ledger's write lock (db/writer.py).
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("user_id", String(64), nullable=False),
    # The user's own count, 1, 2, 3... with no gaps: a consumer can tell it missed one.
    Column("sequence", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", Text, nullable=False),  # JSON
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("user_id", "sequence", name="uq_events_user_sequence"),
    Index("ix_events_user_id", "user_id", "id"),
)

# One row per user: the last sequence given out, bumped under the row's lock.
event_streams = Table(
    "event_streams",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
)

# One row (id 1): every event with an id up to `purged_through_id` has been purged (retention,
# events/retention.py) and everything above it is kept. A stream whose cursor is below it may
# have missed events and is told `reset`.
event_retention = Table(
    "event_retention",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("purged_through_id", BigInteger, nullable=False),
    Column("purged_at", UTCDateTime, nullable=True),
)
