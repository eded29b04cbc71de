"""Admin: disputes and provider-side refunds with what they clawed back; operator alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from coffer import alerts
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.errors import ValidationFailed
from coffer.payments import disputes as dispute_service
from coffer.payments.disputes import Dispute

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)


class DisputeOut(BaseModel):
    id: str
    order_id: str
    provider: str
    provider_dispute_id: str
    kind: Literal["dispute", "provider_refund"]
    status: Literal["open", "won", "lost", "closed"]
    amount: int
    currency: str
    diamonds: int
    shortfall_diamonds: int
    refund_id: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, d: Dispute) -> DisputeOut:
        return cls(
            id=d.id,
            order_id=d.order_id,
            provider=d.provider,
            provider_dispute_id=d.provider_dispute_id,
            kind=d.kind,
            status=d.status,
            amount=d.amount,
            currency=d.currency,
            diamonds=d.diamonds,
            shortfall_diamonds=d.shortfall_diamonds,
            refund_id=d.refund_id,
            reason=d.reason,
            created_at=d.created_at,
            updated_at=d.updated_at,
            resolved_at=d.resolved_at,
        )


class DisputePageOut(BaseModel):
    data: list[DisputeOut]
    has_more: bool
    next_cursor: str | None


class AlertOut(BaseModel):
    id: int
    kind: str
    severity: Literal["info", "warning", "critical"]
    message: str
    details: dict[str, Any]
    subject_id: str | None
    created_at: datetime
    resolved_at: datetime | None


class AlertPageOut(BaseModel):
    data: list[AlertOut]
    has_more: bool
    next_cursor: str | None


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "cursor is not one this API gave out",
        fields=[{"field": "query.cursor", "message": "invalid cursor"}],
    )


def _dispute_position(value: object) -> tuple[datetime, str] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise _bad_cursor()
    try:
        created_at = datetime.fromisoformat(value[0])
    except ValueError as exc:
        raise _bad_cursor() from exc
    if created_at.tzinfo is None:
        raise _bad_cursor()
    return created_at, value[1]


@router.get("/disputes", summary="Chargebacks and provider-side refunds, newest first")
def list_disputes(
    _: AdminPrincipal,
    database: DatabaseDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Literal["open", "won", "lost", "closed"] | None = None,
) -> DisputePageOut:
    with database.read() as session:
        found, has_more = dispute_service.list_disputes(
            session,
            limit=limit,
            before=_dispute_position(decode_cursor(cursor)),
            status=status,
        )
    last = found[-1] if found else None
    next_cursor = (
        encode_cursor([last.created_at.isoformat(), last.id]) if has_more and last else None
    )
    return DisputePageOut(
        data=[DisputeOut.of(d) for d in found], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/alerts", summary="Raised alerts, newest first")
def list_alerts(
    _: AdminPrincipal,
    database: DatabaseDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AlertPageOut:
    position = decode_cursor(cursor)
    if position is not None and (type(position) is not int or position < 1):
        raise _bad_cursor()
    with database.read() as session:
        found, has_more = alerts.list_alerts(session, limit=limit, before=position)
    next_cursor = encode_cursor(found[-1].id) if has_more and found else None
    return AlertPageOut(
        data=[
            AlertOut(
                id=a.id,
                kind=a.kind,
                severity=a.severity,
                message=a.message,
                details=a.details,
                subject_id=a.subject_id,
                created_at=a.created_at,
                resolved_at=a.resolved_at,
            )
            for a in found
        ],
        has_more=has_more,
        next_cursor=next_cursor,
    )
