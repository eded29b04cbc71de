"""The events outbox (DESIGN.md, "Events"): written with the change, read by every deliverer.

A unit of work's `after` calls `emit` in the writer's transaction, so an event exists exactly
when the change it describes committed. Each event has a global `id` that grows in commit order
(the writer commits one batch at a time under the ledger's write lock) and a per-user `sequence`
with no gaps: the user's `event_streams` row is bumped under its lock in the same transaction,
and a rolled-back batch takes its numbers back with it.

Streams (SSE, WebSocket), the pull API and outbound webhooks all read this table; a wake-up
between processes never carries the payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.db import dialect
from coffer.events.tables import event_streams, events

TYPE_LENGTH_MAX = 64
# PostgreSQL's channel for "events were committed": a wake-up with no payload (events/live.py).
NOTIFY_CHANNEL = "coffer_events"
LIST_LIMIT_MAX = 500
_LAST = "last_sequence"
# What the API promises a client that it may ask for (see API.md, "Events and real time").
TYPES = frozenset(
    {
        "wallet.updated",
        "payment.updated",
        "payment.disputed",
        "gift.received",
        "gift.sent",
        "call.updated",
        "escrow.updated",
        "payout.updated",
        "subscription.updated",
        "kyc.updated",
        # An operator alert (e.g. the payment success rate under its floor), for the host
        # app's webhook endpoints; no user's stream carries it.
        "alert.raised",
    }
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    user_id: str
    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    user_id: str
    sequence: int
    type: str
    data: dict[str, Any]
    created_at: datetime


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        user_id=row.user_id,
        sequence=row.sequence,
        type=row.type,
        data=json.loads(row.data),
        created_at=row.created_at,
    )


def emit(session: Session, new: Sequence[NewEvent], *, now: datetime) -> None:
    """Write events in the caller's transaction: per user, the next sequence numbers in order.

    Call it from a unit of work's `after` (under the writer), so ids follow commit order: there
    the events of the whole batch are written together, in order, once every unit has run.
    """
    if not new:
        return
    for event in new:
        assert event.type in TYPES, f"unknown event type {event.type!r}"
    rows = [(event, now) for event in new]
    later = ledger.deferred(session, "events", _write)
    if later is None:
        _write(session, rows)
    else:
        later.extend(rows)


def _write(session: Session, rows: list[tuple[NewEvent, datetime]]) -> None:
    """Two statements for any number of events: bump every user's stream by its count (one
    multi-row upsert, in key order), then insert the events numbered from there."""
    counts: dict[str, int] = {}
    for event, _ in rows:
        counts[event.user_id] = counts.get(event.user_id, 0) + 1
    conn = session.connection()
    statement = dialect.insert(conn, event_streams).values(
        [{"user_id": user_id, "last_sequence": counts[user_id]} for user_id in sorted(counts)]
    )
    bumped = conn.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "last_sequence": event_streams.c.last_sequence + statement.excluded.last_sequence
            },
        ).returning(event_streams.c.user_id, event_streams.c.last_sequence)
    ).all()
    next_sequence = {user_id: last - counts[user_id] + 1 for user_id, last in bumped}
    if set(next_sequence) != set(counts):  # every stream was bumped once: survives python -O
        raise ledger.InvariantViolated("an event stream was not bumped")
    values = []
    for event, created_at in rows:
        sequence = next_sequence[event.user_id]
        next_sequence[event.user_id] = sequence + 1
        values.append(
            {
                "user_id": event.user_id,
                "sequence": sequence,
                "type": event.type,
                "data": json.dumps(dict(event.data), sort_keys=True, separators=(",", ":")),
                "created_at": created_at,
            }
        )
    conn.execute(events.insert(), values)
    if conn.dialect.name == "postgresql":
        # Delivered when (and only if) this transaction commits, to every process listening:
        # their streams then read what committed from the table.
        conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")


def list_after(
    session: Session, *, user_id: str, after: int, limit: int
) -> tuple[list[Event], bool]:
    """The user's events with an id above `after`, oldest first; returns (events, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX and after >= 0
    rows = session.execute(
        select(events)
        .where(events.c.user_id == user_id, events.c.id > after)
        .order_by(events.c.id)
        .limit(limit + 1)
    ).all()
    return [_event(r) for r in rows[:limit]], len(rows) > limit


def latest_id(session: Session, *, user_id: str | None = None) -> int:
    """The highest event id (the user's own, or anyone's); 0 when there is none."""
    statement = select(func.max(events.c.id))
    if user_id is not None:
        statement = statement.where(events.c.user_id == user_id)
    return int(session.execute(statement).scalar() or 0)


def users_after(session: Session, *, after: int, limit: int) -> tuple[set[str], int, bool]:
    """Whose events have an id above `after` (the oldest `limit` of them), the highest id seen
    (`after` when none), and whether more are left: whose streams one process must wake."""
    assert 0 < limit <= 100_000 and after >= 0
    rows = session.execute(
        select(events.c.id, events.c.user_id)
        .where(events.c.id > after)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    return {r.user_id for r in rows}, (rows[-1].id if rows else after), len(rows) == limit


__all__ = [
    "NOTIFY_CHANNEL",
    "TYPES",
    "Event",
    "NewEvent",
    "emit",
    "latest_id",
    "list_after",
    "users_after",
]
