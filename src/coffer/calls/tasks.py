"""The calls' bounded jobs: mark lapsed calls expired, warn when authorised time runs out.

Each finds its candidates with a read, then hands the writer one unit per call; the unit checks
again under the ledger's write lock, so several processes running the same job at once never
expire or warn about a call twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.calls import service
from coffer.calls.service import WARN_BEFORE_S, Call
from coffer.calls.tables import calls
from coffer.db import Database, Writer
from coffer.kit.clock import Clock
from coffer.ledger import Work

BATCH_SIZE_MAX = 100


def expire_lapsed(
    database: Database, writer: Writer, clock: Clock, *, limit: int = BATCH_SIZE_MAX
) -> int:
    """Calls whose hold has lapsed become `expired` (the caller pays nothing); how many."""
    now = clock()
    with database.read() as session:
        due = lapsed(session, now=now, limit=limit)
    return sum(1 for call_id in due if writer.run(expire_work(call_id, now=now)))


def warn_nearly_used(
    database: Database, writer: Writer, clock: Clock, *, limit: int = BATCH_SIZE_MAX
) -> int:
    """`call.updated` with a warning for calls about to use up their authorised time."""
    now = clock()
    with database.read() as session:
        due = nearly_used(session, now=now, limit=limit)
    return sum(1 for call_id in due if writer.run(warn_work(call_id, now=now)))


def lapsed(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Active calls whose hold has passed its timeout, oldest first."""
    rows = session.execute(
        select(calls.c.id)
        .where(calls.c.status == "active", calls.c.expires_at <= now)
        .order_by(calls.c.expires_at, calls.c.id)
        .limit(limit)
    )
    return [r.id for r in rows]


def expire_work(call_id: str, *, now: datetime) -> Work:
    """Mark a lapsed call expired: its hold is (or is about to be) released by the ledger's
    sweep, so the caller pays nothing. No money moves here."""

    def before(session: Session) -> Any:
        locked = service.locked_active(session, call_id)
        if locked.status != "active" or locked.expires_at > now:
            return ledger.Done(None)  # ended, or extended, meanwhile
        return locked

    def after(session: Session, locked: Call, _: list[ledger.Transfer]) -> str:
        session.execute(
            update(calls)
            .where(calls.c.id == call_id, calls.c.status == "active")
            .values(status="expired", cost=0, updated_at=now)
        )
        events.emit(
            session,
            service.call_events(service.get_call(session, call_id), wallet_posted=None),
            now=now,
        )
        return call_id

    return Work(None, before=before, after=after, claims=frozenset({call_id}))


def nearly_used(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Active calls within WARN_BEFORE_S of their authorised end that were not yet warned."""
    rows = session.execute(
        select(calls.c.id, calls.c.started_at, calls.c.authorized_seconds)
        .where(calls.c.status == "active", calls.c.warned_at.is_(None))
        .order_by(calls.c.started_at)
        .limit(limit * 10)
    )
    due = [
        r.id
        for r in rows
        if r.started_at + timedelta(seconds=r.authorized_seconds - WARN_BEFORE_S) <= now
    ]
    return due[:limit]


def warn_work(call_id: str, *, now: datetime) -> Work:
    """Tell both parties the authorised time is nearly used, once per hold."""

    def before(session: Session) -> Any:
        locked = service.locked_active(session, call_id)
        if locked.status != "active" or locked.warned_at is not None:
            return ledger.Done(None)
        return locked

    def after(session: Session, locked: Call, _: list[ledger.Transfer]) -> str:
        session.execute(update(calls).where(calls.c.id == call_id).values(warned_at=now))
        ends = locked.started_at + timedelta(seconds=locked.authorized_seconds)
        left_s = max(0, int((ends - now).total_seconds()))
        events.emit(
            session,
            service.call_events(
                locked, wallet_posted=None, warning="time_nearly_used", seconds_left=left_s
            ),
            now=now,
        )
        return call_id

    return Work(None, before=before, after=after, claims=frozenset({call_id}))
