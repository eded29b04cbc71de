"""Endpoints, deliveries and attempts: the rules. Functions `f(session, *, ...)`; nothing commits.

Every event in the outbox (`coffer.events`) whose type an enabled endpoint asked for gets one
delivery row for that endpoint (`fan_out`, which moves the endpoint's cursor with a guarded
update, so two processes never both fan the same events out). The delivery job then claims due
deliveries and sends them (`outbound/tasks.py`); `record_attempt` books what came back. None of
this moves money: it commits in ordinary units of work, not through the writer.

Operator actions (register, rotate, resend, recover) take a reason and go into the audit trail
(`coffer.oplog`); an endpoint disabled by a `410 Gone` is recorded there by `system`, with an alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from coffer import events, oplog
from coffer.db import pages
from coffer.errors import InvalidState, NotFound, ValidationFailed
from coffer.events.tables import events as events_table
from coffer.kit.clock import rfc3339
from coffer.kit.ids import new_id
from coffer.outbound import signing
from coffer.outbound.tables import attempts, deliveries, endpoints

ALL_EVENTS = "*"
EVENT_TYPES_MAX = 32
ENDPOINTS_MAX = 100
FANOUT_BATCH_MAX = 500  # events read per endpoint per run
RECOVER_MAX = 10_000  # failed deliveries put back per recovery
ATTEMPTS_SHOWN_MAX = 20  # per delivery in a list answer, the latest
LIST_LIMIT_MAX = 500
ROTATION_OVERLAP = timedelta(hours=24)
ERROR_LENGTH_MAX = 255
STATUSES = ("pending", "succeeded", "failed")
ENDPOINT_STATUSES = ("enabled", "disabled")
GONE = 410
_SEARCH_PROBES_MAX = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    events: tuple[str, ...]
    status: str
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    throttled_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: int
    event_type: str
    message_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    attempt_log: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt came back with (status None: no answer: refused, unreachable, timeout)."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    retry_after_s: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def slow_down(self) -> bool:
        return self.status_code is not None and (self.status_code == 429 or self.status_code >= 500)


def _endpoint(row: Row[Any]) -> Endpoint:
    return Endpoint(
        id=row.id,
        url=row.url,
        events=tuple(json.loads(row.event_types)),
        status=row.status,
        disabled_reason=row.disabled_reason,
        previous_secret_expires_at=row.previous_secret_expires_at,
        throttled_until=row.throttled_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _delivery(row: Row[Any], log: tuple[Attempt, ...] = ()) -> Delivery:
    fields = {
        name: getattr(row, name) for name in Delivery.__dataclass_fields__ if name != "attempt_log"
    }
    return Delivery(**(fields | {"attempt_log": log}))


def _event_types(wanted: list[str]) -> list[str]:
    unknown = sorted({t for t in wanted if t != ALL_EVENTS and t not in events.TYPES})
    if not wanted or len(wanted) > EVENT_TYPES_MAX or unknown:
        raise ValidationFailed(
            f"events must be 1 to {EVENT_TYPES_MAX} of {sorted(events.TYPES)} or '*'",
            fields=[{"field": "body.events", "message": f"unknown event types {unknown}"}],
        )
    return sorted(set(wanted))


def _locked_endpoint(session: Session, endpoint_id: str) -> Row[Any]:
    row = session.execute(
        select(endpoints).where(endpoints.c.id == endpoint_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound("no such webhook endpoint", endpoint_id=endpoint_id)
    return row


def oldest_event_needed(session: Session) -> int | None:
    """The first event an enabled endpoint has not yet been given (None: none is behind); the
    outbox's purge keeps it and everything after it."""
    cursor = session.execute(
        select(func.min(endpoints.c.last_event_id)).where(endpoints.c.status == "enabled")
    ).scalar_one()
    return None if cursor is None else int(cursor) + 1


def create_endpoint(
    session: Session,
    *,
    url: str,
    event_types: list[str],
    actor: str,
    reason: str | None,
    now: datetime,
) -> tuple[Endpoint, str]:
    """Register an endpoint (its URL already checked by `urls.check`); returns it and its
    secret, which only this answer and a rotation's show. It receives events from now on."""
    wanted = _event_types(event_types)
    count = session.execute(select(func.count()).select_from(endpoints)).scalar_one()
    if count >= ENDPOINTS_MAX:
        raise InvalidState(f"at most {ENDPOINTS_MAX} webhook endpoints")
    head = session.execute(select(func.max(events_table.c.id))).scalar_one()
    secret = signing.new_secret()
    endpoint_id = new_id("we")
    session.execute(
        endpoints.insert().values(
            id=endpoint_id,
            url=url,
            event_types=json.dumps(wanted),
            status="enabled",
            secret=secret,
            last_event_id=head or 0,
            created_at=now,
            updated_at=now,
        )
    )
    oplog.record(
        session,
        actor=actor,
        action="webhook_endpoint.create",
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        reason=reason,
        details={"url": url, "events": wanted},
        now=now,
    )
    return get_endpoint(session, endpoint_id), secret


def get_endpoint(session: Session, endpoint_id: str) -> Endpoint:
    row = session.execute(select(endpoints).where(endpoints.c.id == endpoint_id)).one_or_none()
    if row is None:
        raise NotFound("no such webhook endpoint", endpoint_id=endpoint_id)
    return _endpoint(row)


def list_endpoints(
    session: Session, *, limit: int, before: tuple[datetime, str] | None, status: str | None
) -> tuple[list[Endpoint], bool]:
    """Newest first, keyset-paged on (created_at, id)."""
    assert 0 < limit <= LIST_LIMIT_MAX and status in (None, *ENDPOINT_STATUSES)
    t = endpoints.c
    rows, has_more = pages.newest_first(
        session,
        select(endpoints),
        at=t.created_at,
        id_=t.id,
        limit=limit,
        before=before,
        equal=((t.status, status),),
    )
    return [_endpoint(r) for r in rows], has_more


def rotate_secret(
    session: Session, endpoint_id: str, *, actor: str, reason: str | None, now: datetime
) -> tuple[Endpoint, str]:
    """A new secret signs from now on; the one it replaces signs beside it for 24 h."""
    row = _locked_endpoint(session, endpoint_id)
    secret = signing.new_secret()
    session.execute(
        update(endpoints)
        .where(endpoints.c.id == endpoint_id)
        .values(
            secret=secret,
            previous_secret=row.secret,
            previous_secret_expires_at=now + ROTATION_OVERLAP,
            updated_at=now,
        )
    )
    oplog.record(
        session,
        actor=actor,
        action="webhook_endpoint.rotate_secret",
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        reason=reason,
        details={"previous_secret_expires_at": rfc3339(now + ROTATION_OVERLAP)},
        now=now,
    )
    return get_endpoint(session, endpoint_id), secret


def recover(
    session: Session,
    endpoint_id: str,
    *,
    since: datetime,
    actor: str,
    reason: str,
    now: datetime,
) -> tuple[Endpoint, int]:
    """Enable the endpoint again and send anew what failed since `since`; events it missed while
    disabled are fanned out from `since` on. Returns the endpoint and how many were put back."""
    if since > now:
        raise ValidationFailed(
            "since is in the future",
            fields=[{"field": "body.since", "message": "in the future"}],
        )
    row = _locked_endpoint(session, endpoint_id)
    d = deliveries.c
    ids = list(
        session.execute(
            select(d.id)
            .where(d.endpoint_id == endpoint_id, d.status == "failed", d.created_at >= since)
            .order_by(d.created_at, d.id)
            .limit(RECOVER_MAX)
        ).scalars()
    )
    if ids:
        session.execute(
            update(deliveries)
            .where(d.id.in_(ids), d.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
        )
    cursor = row.last_event_id
    if row.status == "disabled":
        # Skip what it missed before `since`; what came after is fanned out on the next run.
        first = _first_event_id_at(session, since)
        head = session.execute(select(func.max(events_table.c.id))).scalar_one() or 0
        cursor = max(cursor, head if first is None else first - 1)
    session.execute(
        update(endpoints)
        .where(endpoints.c.id == endpoint_id)
        .values(
            status="enabled",
            disabled_reason=None,
            throttled_until=None,
            last_event_id=cursor,
            updated_at=now,
        )
    )
    oplog.record(
        session,
        actor=actor,
        action="webhook_endpoint.recover",
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        reason=reason,
        details={"since": rfc3339(since), "requeued": len(ids), "was": row.status},
        now=now,
    )
    return get_endpoint(session, endpoint_id), len(ids)


def _first_event_id_at(session: Session, at: datetime) -> int | None:
    """The first outbox event created at or after `at`, by binary search on the primary key
    (ids grow in commit order, and so do their times): a few index probes, whatever the size
    of the outbox, instead of a scan of an unindexed `created_at`."""
    e = events_table.c
    low, high = session.execute(select(func.min(e.id), func.max(e.id))).one()
    if high is None:
        return None

    def first_from(event_id: int) -> Any:
        return session.execute(
            select(e.id, e.created_at).where(e.id >= event_id).order_by(e.id).limit(1)
        ).one()

    start, end = low, high + 1
    for _ in range(_SEARCH_PROBES_MAX):
        if start >= end:
            break
        middle = (start + end) // 2
        if first_from(middle).created_at >= at:
            end = middle
        else:
            start = middle + 1
    assert start >= end, "a binary search over 64-bit ids ends in 64 probes"
    return None if start > high else int(first_from(start).id)


def list_deliveries(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
    endpoint_id: str | None,
    status: str | None,
) -> tuple[list[Delivery], bool]:
    """Newest first, keyset-paged on (created_at, id), each with its latest attempts."""
    assert 0 < limit <= LIST_LIMIT_MAX and status in (None, *STATUSES)
    d = deliveries.c
    rows, has_more = pages.newest_first(
        session,
        select(deliveries),
        at=d.created_at,
        id_=d.id,
        limit=limit,
        before=before,
        equal=((d.endpoint_id, endpoint_id), (d.status, status)),
    )
    logs = _attempt_logs(session, [r.id for r in rows])
    return [_delivery(r, logs.get(r.id, ())) for r in rows], has_more


def _attempt_logs(session: Session, delivery_ids: list[str]) -> dict[str, tuple[Attempt, ...]]:
    if not delivery_ids:
        return {}
    found: dict[str, list[Attempt]] = {}
    for r in session.execute(
        select(attempts).where(attempts.c.delivery_id.in_(delivery_ids)).order_by(attempts.c.id)
    ):
        found.setdefault(r.delivery_id, []).append(
            Attempt(r.attempted_at, r.status_code, r.latency_ms, r.error)
        )
    return {k: tuple(v[-ATTEMPTS_SHOWN_MAX:]) for k, v in found.items()}


def get_delivery(session: Session, delivery_id: str) -> Delivery:
    row = session.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one_or_none()
    if row is None:
        raise NotFound("no such webhook delivery", delivery_id=delivery_id)
    return _delivery(row, _attempt_logs(session, [delivery_id]).get(delivery_id, ()))


def resend(
    session: Session, delivery_id: str, *, actor: str, reason: str, now: datetime
) -> Delivery:
    """Queue one delivery again, due now, with a fresh schedule (the same `webhook-id`)."""
    row = session.execute(
        select(deliveries.c.status, endpoints.c.status.label("endpoint_status"))
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(deliveries.c.id == delivery_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound("no such webhook delivery", delivery_id=delivery_id)
    if row.endpoint_status != "enabled":
        raise InvalidState("the endpoint is disabled: recover it first")
    if row.status == "pending":
        raise InvalidState("the delivery is already queued")
    session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    oplog.record(
        session,
        actor=actor,
        action="webhook_delivery.resend",
        subject_type="webhook_delivery",
        subject_id=delivery_id,
        reason=reason,
        details={"was": row.status},
        now=now,
    )
    return get_delivery(session, delivery_id)
