"""Recording and listing operator actions. Recording is one insert in the caller's unit of work;
nothing here commits, and an entry is never changed or deleted."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.orm import Session

from coffer.db import pages
from coffer.kit.ids import new_id
from coffer.oplog.tables import operator_actions

ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$"  # kyc.approve, call_rate.set
ACTOR_LENGTH_MAX = 64
SUBJECT_TYPE_LENGTH_MAX = 32
SUBJECT_ID_LENGTH_MAX = 128
REASON_LENGTH_MAX = 500
DETAILS_LENGTH_MAX = 4_000  # characters of JSON: an entry describes an action, not a payload
LIST_LIMIT_MAX = 500
_ACTION = re.compile(ACTION_PATTERN)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    reason: str | None
    details: dict[str, Any]
    created_at: datetime


def _entry(row: Row[Any]) -> Entry:
    return Entry(
        id=row.id,
        actor=row.actor,
        action=row.action,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        reason=row.reason,
        details=json.loads(row.details),
        created_at=row.created_at,
    )


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    reason: str | None,
    details: Mapping[str, Any] | None,
    now: datetime,
) -> Entry:
    """Write one entry in the caller's transaction and return it.

    Every argument comes from Coffer's own code (the API validated what the operator typed), so
    a bad one is a programmer's error: asserted, and the reason is cut to its column, never
    silently dropped."""
    assert 0 < len(actor) <= ACTOR_LENGTH_MAX, actor
    assert _ACTION.fullmatch(action), action
    assert 0 < len(subject_type) <= SUBJECT_TYPE_LENGTH_MAX, subject_type
    assert 0 < len(subject_id) <= SUBJECT_ID_LENGTH_MAX, subject_id
    encoded = json.dumps(dict(details or {}), sort_keys=True, default=str)
    assert len(encoded) <= DETAILS_LENGTH_MAX, len(encoded)
    reason = None if reason is None else (reason.strip()[:REASON_LENGTH_MAX] or None)
    entry = Entry(
        id=new_id("act"),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        reason=reason,
        details=json.loads(encoded),
        created_at=now,
    )
    session.execute(
        insert(operator_actions).values(
            id=entry.id,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            reason=reason,
            details=encoded,
            created_at=now,
        )
    )
    return entry


def list_entries(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    actor: str | None = None,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
) -> tuple[list[Entry], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (entries, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    t = operator_actions.c
    rows, has_more = pages.newest_first(
        session,
        select(operator_actions),
        at=t.created_at,
        id_=t.id,
        limit=limit,
        before=before,
        equal=(
            (t.actor, actor),
            (t.action, action),
            (t.subject_type, subject_type),
            (t.subject_id, subject_id),
        ),
    )
    return [_entry(r) for r in rows], has_more
