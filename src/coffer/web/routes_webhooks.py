"""The host app's webhook endpoints and their deliveries (resend one, recover an endpoint),
raised alerts, and the operators' audit log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from coffer import alerts, oplog, outbound
from coffer.errors import CofferError, ValidationFailed
from coffer.web import paging, state
from coffer.web.render import done, page, refused
from coffer.web.session import FormDep, OperatorDep

router = APIRouter()
_ID = r"^[a-z]{2,3}_[0-9a-z]{20}$"
CursorQuery = Annotated[str | None, Query(max_length=paging.CURSOR_LENGTH_MAX)]
IdPath = Annotated[str, Path(pattern=_ID, max_length=32)]
IdQuery = Annotated[str | None, Query(pattern=_ID, max_length=32)]
ENDPOINTS_MAX = 100


@router.get("/webhooks")
def webhooks_page(
    request: Request,
    operator: OperatorDep,
    endpoint_id: IdQuery = None,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    cursor: CursorQuery = None,
) -> Response:
    try:
        before = paging.time_position(cursor)
    except CofferError as exc:
        return refused(request, operator, exc)
    with state.database(request).read() as session:
        endpoints, more_endpoints = outbound.list_endpoints(
            session, limit=ENDPOINTS_MAX, before=None, status=None
        )
        deliveries, has_more = outbound.list_deliveries(
            session,
            limit=paging.PAGE_SIZE,
            before=before,
            endpoint_id=endpoint_id,
            status=status,
        )
    last = deliveries[-1] if deliveries else None
    return page(
        request,
        "webhooks.html",
        operator,
        endpoints=endpoints,
        more_endpoints=more_endpoints,
        deliveries=deliveries,
        endpoint_id=endpoint_id,
        status=status,
        next_cursor=last and paging.next_time_cursor(last.created_at, last.id, has_more),
    )


@router.post("/webhook-deliveries/{delivery_id}/resend")
def resend(request: Request, operator: OperatorDep, form: FormDep, delivery_id: IdPath) -> Response:
    try:
        reason = paging.reason(form)
        with state.database(request).unit_of_work() as session:
            outbound.resend(
                session, delivery_id, actor=operator.key_id, reason=reason,
                now=state.clock(request)(),
            )  # fmt: skip
    except CofferError as exc:
        return refused(request, operator, exc)
    return done("/console/webhooks", "resent")


@router.post("/webhook-endpoints/{endpoint_id}/recover")
def recover(
    request: Request, operator: OperatorDep, form: FormDep, endpoint_id: IdPath
) -> Response:
    try:
        reason = paging.reason(form)
        since = paging.parse_time(form.get("since"), name="since")
        if since is None:
            raise ValidationFailed("since: from when to send the failed deliveries again")
        with state.database(request).unit_of_work() as session:
            outbound.recover(
                session, endpoint_id, since=since, actor=operator.key_id, reason=reason,
                now=state.clock(request)(),
            )  # fmt: skip
    except CofferError as exc:
        return refused(request, operator, exc)
    return done("/console/webhooks", "recovered")


@router.get("/alerts")
def alert_list(
    request: Request,
    operator: OperatorDep,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    with state.database(request).read() as session:
        found, has_more = alerts.list_alerts(session, limit=paging.PAGE_SIZE, before=cursor)
    return page(
        request,
        "alerts.html",
        operator,
        alerts=found,
        next_cursor=found[-1].id if has_more and found else None,
    )


@router.get("/audit-log")
def audit_log(
    request: Request,
    operator: OperatorDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject_id: Annotated[str | None, Query(max_length=128)] = None,
    cursor: CursorQuery = None,
) -> Response:
    try:
        before = paging.time_position(cursor)
        filters = {
            "actor": paging.text(actor, name="actor", length_max=64),
            "action": paging.text(action, name="action", length_max=64),
            "subject_id": paging.text(subject_id, name="subject_id"),
        }
    except CofferError as exc:
        return refused(request, operator, exc)
    with state.database(request).read() as session:
        found, has_more = oplog.list_entries(
            session, limit=paging.PAGE_SIZE, before=before, **filters
        )
    last = found[-1] if found else None
    return page(
        request,
        "audit.html",
        operator,
        entries=found,
        filters={k: v or "" for k, v in filters.items()},
        next_cursor=last and paging.next_time_cursor(last.created_at, last.id, has_more),
    )
