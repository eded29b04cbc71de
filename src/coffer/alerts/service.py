"""Raising and listing alerts. Raising is one insert in the caller's unit of work, so an alert
exists exactly when the change it reports was committed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.orm import Session

from coffer.alerts.tables import alerts

SEVERITIES = ("info", "warning", "critical")
MESSAGE_LENGTH_MAX = 500
LIST_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    kind: str
    severity: str
    message: str
    details: dict[str, Any]
    subject_id: str | None
    created_at: datetime
    resolved_at: datetime | None


def raise_alert(
    session: Session,
    *,
    kind: str,
    severity: str,
    message: str,
    now: datetime,
    subject_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown alert severity {severity!r}")
    session.execute(
        insert(alerts).values(
            kind=kind[:64],
            severity=severity,
            message=message[:MESSAGE_LENGTH_MAX],
            details=json.dumps(dict(details or {}), sort_keys=True, default=str),
            subject_id=subject_id[:128] if subject_id else None,
            created_at=now,
        )
    )


def resolve_alerts(
    session: Session, *, kind: str, now: datetime, subject_id: str | None = None
) -> int:
    """Mark the open alerts of `kind` (and `subject_id`, when given) resolved at `now`; how many."""
    query = update(alerts).where(alerts.c.kind == kind, alerts.c.resolved_at.is_(None))
    if subject_id is not None:
        query = query.where(alerts.c.subject_id == subject_id)
    result = session.execute(query.values(resolved_at=now))
    return result.rowcount if isinstance(result, CursorResult) else 0


def list_alerts(
    session: Session, *, limit: int, before: int | None = None, kind: str | None = None
) -> tuple[list[Alert], bool]:
    """Newest first, keyset-paged on id; returns (alerts, has_more)."""
    if not 0 < limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit must be 1 to {LIST_LIMIT_MAX}")
    query = select(alerts)
    if before is not None:
        query = query.where(alerts.c.id < before)
    if kind is not None:
        query = query.where(alerts.c.kind == kind)
    rows = session.execute(query.order_by(alerts.c.id.desc()).limit(limit + 1)).all()
    found = [
        Alert(
            id=r.id,
            kind=r.kind,
            severity=r.severity,
            message=r.message,
            details=json.loads(r.details),
            subject_id=r.subject_id,
            created_at=r.created_at,
            resolved_at=r.resolved_at,
        )
        for r in rows[:limit]
    ]
    return found, len(rows) > limit
