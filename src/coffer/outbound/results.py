"""Booking what an attempt came back with: the attempt log, the delivery's next step, and what
the answer says about the endpoint (a 410 disables it; a 429 or 5xx slows it down)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coffer import alerts, oplog
from coffer.outbound import schedule
from coffer.outbound.service import ERROR_LENGTH_MAX, GONE, Outcome
from coffer.outbound.tables import attempts, deliveries, endpoints

SYSTEM_ACTOR = "system"


def record_attempt(
    session: Session,
    *,
    delivery_id: str,
    endpoint_id: str,
    outcome: Outcome,
    now: datetime,
    rng: random.Random,
) -> str:
    """Log the attempt and move the delivery on; returns its status after it."""
    assert outcome.latency_ms >= 0
    error = outcome.error[:ERROR_LENGTH_MAX] if outcome.error else None
    row = session.execute(
        select(deliveries.c.attempts, deliveries.c.status)
        .where(deliveries.c.id == delivery_id)
        .with_for_update()
    ).one()
    session.execute(
        attempts.insert().values(
            delivery_id=delivery_id,
            attempted_at=now,
            attempt_number=row.attempts + 1,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=error,
        )
    )
    if row.status != "pending":
        return str(row.status)  # resent or recovered meanwhile: that round decides
    made = row.attempts + 1
    values: dict[str, object] = {
        "attempts": made,
        "last_status_code": outcome.status_code,
        "last_error": error,
        "updated_at": now,
    }
    if outcome.succeeded:
        values |= {"status": "succeeded", "next_attempt_at": None, "succeeded_at": now}
    elif outcome.status_code == GONE:
        values |= {"status": "failed", "next_attempt_at": None}
        _disable(session, endpoint_id=endpoint_id, now=now)
    else:
        retry_after_s = outcome.retry_after_s if outcome.slow_down else None
        delay_s = schedule.next_delay_s(made, retry_after_s=retry_after_s, rng=rng)
        if delay_s is None:
            values |= {"status": "failed", "next_attempt_at": None}
        else:
            values |= {"next_attempt_at": now + timedelta(seconds=delay_s)}
        if retry_after_s is not None:  # the endpoint said how long: nothing goes there till then
            _throttle(session, endpoint_id=endpoint_id, retry_after_s=retry_after_s, now=now)
    session.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(values))
    return str(values.get("status", "pending"))


def postpone(session: Session, *, delivery_id: str, until: datetime, now: datetime) -> None:
    """Hand a claimed delivery back untried, due at `until` (its endpoint asked us to wait)."""
    session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
        .values(next_attempt_at=until, updated_at=now)
    )


def _throttle(session: Session, *, endpoint_id: str, retry_after_s: int, now: datetime) -> None:
    until = now + timedelta(seconds=retry_after_s)
    session.execute(
        update(endpoints)
        .where(
            endpoints.c.id == endpoint_id,
            endpoints.c.throttled_until.is_(None) | (endpoints.c.throttled_until < until),
        )
        .values(throttled_until=until)
    )


def _disable(session: Session, *, endpoint_id: str, now: datetime) -> None:
    """410 Gone: the receiver says the endpoint is no more. Disabled once (the guard), with an
    alert and an audit entry; its pending deliveries wait for a recovery."""
    url = session.execute(
        update(endpoints)
        .where(endpoints.c.id == endpoint_id, endpoints.c.status == "enabled")
        .values(status="disabled", disabled_reason="410 Gone", updated_at=now)
        .returning(endpoints.c.url)
    ).scalar_one_or_none()
    if url is None:
        return  # already disabled by another attempt
    alerts.raise_alert(
        session,
        kind="webhook_endpoint.disabled",
        severity="warning",
        message=f"webhook endpoint {endpoint_id} answered 410 Gone and was disabled",
        now=now,
        subject_id=endpoint_id,
        details={"url": url, "status_code": GONE},
    )
    oplog.record(
        session,
        actor=SYSTEM_ACTOR,
        action="webhook_endpoint.disable",
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        reason="the endpoint answered 410 Gone",
        details={"url": url},
        now=now,
    )


__all__ = ["SYSTEM_ACTOR", "postpone", "record_attempt"]
