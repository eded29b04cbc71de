"""Admin: the operator audit trail, newest first (`GET /admin/audit-log`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coffer import oplog
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.payments.service import decode_order_cursor

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)


class AuditEntryOut(BaseModel):
    id: str
    actor: str  # the API key that acted (key_...)
    action: str  # e.g. kyc.approve, user.freeze, payment.refund, call_rate.set, agency.put
    subject_type: str
    subject_id: str
    reason: str | None
    details: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, entry: oplog.Entry) -> AuditEntryOut:
        return cls(**{name: getattr(entry, name) for name in cls.model_fields})


class AuditPageOut(BaseModel):
    data: list[AuditEntryOut]
    has_more: bool
    next_cursor: str | None


@router.get("/audit-log", summary="Every operator action: who, what, to whom, when and why")
def audit_log(
    _: AdminPrincipal,
    database: DatabaseDep,
    actor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")] = None,
    action: Annotated[str | None, Query(pattern=oplog.ACTION_PATTERN, max_length=64)] = None,
    subject_type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    subject_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:*\-]{1,128}$")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = oplog.list_entries(
            session,
            limit=limit,
            before=before,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
        )
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return AuditPageOut(
        data=[AuditEntryOut.of(e) for e in found], has_more=has_more, next_cursor=next_cursor
    )
