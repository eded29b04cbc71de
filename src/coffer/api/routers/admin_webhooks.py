"""Admin: the host app's webhook endpoints and their delivery log (outbound webhooks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from coffer import outbound
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, SettingsDep, clock_of
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.errors import ValidationFailed
from coffer.outbound.schemas import (
    DeliveryOut,
    DeliveryPageOut,
    EndpointIn,
    EndpointOut,
    EndpointPageOut,
    EndpointWithSecretOut,
    RecoveredOut,
    RecoverIn,
    ResendIn,
    RotateIn,
)
from coffer.outbound.urls import RefusedUrl, UrlPolicy
from coffer.payments.service import decode_order_cursor

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)
_ID = r"^[a-z]{2,3}_[0-9a-z]{20}$"
EndpointIdPath = Annotated[str, Path(pattern=_ID, max_length=32)]
DeliveryIdPath = Annotated[str, Path(pattern=_ID, max_length=32)]


def _secret(endpoint: outbound.Endpoint, secret: str) -> EndpointWithSecretOut:
    return EndpointWithSecretOut(**EndpointOut.of(endpoint).model_dump(), secret=secret)


@router.post(
    "/webhook-endpoints",
    status_code=201,
    responses=errors.responses(*errors.WITH_BODY, 409),
    summary="Register an endpoint for Coffer's events; the answer shows its signing secret",
)
def create_endpoint(
    body: EndpointIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
    settings: SettingsDep,
) -> EndpointWithSecretOut:
    policy = UrlPolicy.of(env=settings.env, allow_private=settings.webhook_allow_private)
    try:
        url = outbound.urls.check(body.url, policy)
    except RefusedUrl as exc:
        raise ValidationFailed(
            f"this URL cannot be an endpoint: {exc}",
            fields=[{"field": "body.url", "message": str(exc)}],
        ) from None
    with database.unit_of_work() as session:
        endpoint, secret = outbound.create_endpoint(
            session,
            url=url,
            event_types=body.events,
            actor=principal.id,
            reason=body.reason,
            now=clock_of(request)(),
        )
    return _secret(endpoint, secret)


@router.get("/webhook-endpoints", summary="The webhook endpoints, newest first")
def list_endpoints(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: Annotated[str | None, Query(pattern=r"^(enabled|disabled)$")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> EndpointPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = outbound.list_endpoints(
            session, limit=limit, before=before, status=status
        )
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return EndpointPageOut(
        data=[EndpointOut.of(e) for e in found], has_more=has_more, next_cursor=next_cursor
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    responses=errors.responses(*errors.WITH_BODY, 404),
    summary="A new signing secret; the old one signs beside it for 24 h",
)
def rotate_secret(
    endpoint_id: EndpointIdPath,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
    body: RotateIn | None = None,
) -> EndpointWithSecretOut:
    with database.unit_of_work() as session:
        endpoint, secret = outbound.rotate_secret(
            session,
            endpoint_id,
            actor=principal.id,
            reason=body.reason if body else None,
            now=clock_of(request)(),
        )
    return _secret(endpoint, secret)


@router.post(
    "/webhook-endpoints/{endpoint_id}/recover",
    responses=errors.responses(*errors.WITH_BODY, 404),
    summary="Enable the endpoint again and send anew what failed since a time",
)
def recover(
    endpoint_id: EndpointIdPath,
    body: RecoverIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
) -> RecoveredOut:
    with database.unit_of_work() as session:
        endpoint, requeued = outbound.recover(
            session,
            endpoint_id,
            since=body.since,
            actor=principal.id,
            reason=body.reason,
            now=clock_of(request)(),
        )
    return RecoveredOut(endpoint=EndpointOut.of(endpoint), requeued=requeued)


@router.get(
    "/webhook-deliveries",
    summary="The delivery log, newest first: each attempt's status code and latency",
)
def list_deliveries(
    _: AdminPrincipal,
    database: DatabaseDep,
    endpoint_id: Annotated[str | None, Query(pattern=_ID, max_length=32)] = None,
    status: Annotated[str | None, Query(pattern=r"^(pending|succeeded|failed)$")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = outbound.list_deliveries(
            session, limit=limit, before=before, endpoint_id=endpoint_id, status=status
        )
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return DeliveryPageOut(
        data=[DeliveryOut.of(d) for d in found], has_more=has_more, next_cursor=next_cursor
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/resend",
    status_code=202,
    responses=errors.responses(*errors.WITH_BODY, 404, 409),
    summary="Send one delivery again (queued now, with a fresh retry schedule)",
)
def resend(
    delivery_id: DeliveryIdPath,
    body: ResendIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
) -> DeliveryOut:
    with database.unit_of_work() as session:
        delivery = outbound.resend(
            session, delivery_id, actor=principal.id, reason=body.reason, now=clock_of(request)()
        )
    return DeliveryOut.of(delivery)
