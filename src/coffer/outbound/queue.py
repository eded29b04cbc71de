"""The queue of deliveries: fanning outbox events out to endpoints, and what is due to be sent.

`fan_out` moves an endpoint's cursor with a guarded update, so two processes never both fan the
same events out (and the (endpoint, event) unique key backs it up). Nothing here commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from coffer.db import dialect
from coffer.events.tables import events as events_table
from coffer.kit.clock import rfc3339
from coffer.kit.ids import new_id
from coffer.outbound.service import ALL_EVENTS, FANOUT_BATCH_MAX
from coffer.outbound.tables import deliveries, endpoints


@dataclass(frozen=True, slots=True)
class Target:
    """What one attempt needs, read in a short transaction before the network call."""

    delivery_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]  # newest first; two during a rotation's overlap
    message_id: str
    payload: str


def fan_out(
    session: Session, *, endpoint_id: str, now: datetime, batch_size: int = FANOUT_BATCH_MAX
) -> int:
    """Delivery rows for the endpoint's next events past its cursor; returns how many."""
    assert 0 < batch_size <= FANOUT_BATCH_MAX
    row = session.execute(
        select(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.status == "enabled")
    ).one_or_none()
    if row is None:
        return 0
    e = events_table.c
    found = session.execute(
        select(events_table).where(e.id > row.last_event_id).order_by(e.id).limit(batch_size)
    ).all()
    if not found:
        return 0
    moved = (
        session.connection()
        .execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id, endpoints.c.last_event_id == row.last_event_id)
            .values(last_event_id=found[-1].id)
        )
        .rowcount
    )
    if moved != 1:
        return 0  # another process fanned these out first
    wanted = set(json.loads(row.event_types))
    values = [
        {
            "id": new_id("whd"),
            "endpoint_id": endpoint_id,
            "event_id": event.id,
            "event_type": event.type,
            "message_id": f"msg_{event.id}",
            "payload": _payload(event),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for event in found
        if ALL_EVENTS in wanted or event.type in wanted
    ]
    if values:
        statement = dialect.insert(session, deliveries).values(values)
        session.execute(
            statement.on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        )
    return len(values)


def _payload(event: Row[Any]) -> str:
    """The body a receiver gets: Standard Webhooks' `type`, `timestamp` and `data`, and where
    the event stands in the outbox and in its user's stream."""
    body = {
        "type": event.type,
        "timestamp": rfc3339(event.created_at),
        "event_id": event.id,
        "user_id": event.user_id,
        "sequence": event.sequence,
        "data": json.loads(event.data),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def due(*, now: datetime, limit: int) -> Select[Any]:
    """Pending deliveries whose time has come, of enabled endpoints that are not throttled."""
    e = endpoints.c
    ready = select(e.id).where(
        e.status == "enabled", (e.throttled_until.is_(None)) | (e.throttled_until <= now)
    )
    d = deliveries.c
    return (
        select(d.id)
        .where(d.status == "pending", d.next_attempt_at <= now, d.endpoint_id.in_(ready))
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
    )


def target(session: Session, delivery_id: str, *, now: datetime) -> Target | None:
    """What to send for a claimed delivery; None if it is no longer pending or its endpoint
    no longer enabled (resent, recovered or disabled since it was claimed)."""
    row = session.execute(
        select(
            deliveries.c.message_id,
            deliveries.c.payload,
            deliveries.c.status,
            endpoints.c.id.label("endpoint_id"),
            endpoints.c.url,
            endpoints.c.status.label("endpoint_status"),
            endpoints.c.secret,
            endpoints.c.previous_secret,
            endpoints.c.previous_secret_expires_at,
        )
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(deliveries.c.id == delivery_id)
    ).one_or_none()
    if row is None or row.status != "pending" or row.endpoint_status != "enabled":
        return None
    secrets = [row.secret]
    expires = row.previous_secret_expires_at
    if row.previous_secret is not None and expires is not None and now < expires:
        secrets.append(row.previous_secret)
    return Target(
        delivery_id=delivery_id,
        endpoint_id=row.endpoint_id,
        url=row.url,
        secrets=tuple(secrets),
        message_id=row.message_id,
        payload=row.payload,
    )
