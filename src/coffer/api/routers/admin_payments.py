"""Admin: payment orders and refunds (admin key)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from coffer import idempotency
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of, get_providers, get_writer
from coffer.api.idempotent import IdempotencyKeyHeader
from coffer.api.pagination import Cursor, Limit, TimeBound, decode_cursor, encode_cursor, time_range
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN
from coffer.payments import refund_flows
from coffer.payments import refunds as refund_service
from coffer.payments import service as payments
from coffer.payments.schemas import (
    ORDER_ID_LENGTH_MAX,
    ORDER_ID_PATTERN,
    OrderOut,
    RefundIn,
    RefundOut,
    RefundResultOut,
)

router = APIRouter(
    prefix="/admin/payment-orders",
    tags=["admin"],
    responses=errors.responses(*errors.AUTHENTICATED),
)

OrderId = Annotated[str, Path(pattern=ORDER_ID_PATTERN, max_length=ORDER_ID_LENGTH_MAX)]
Status = Literal[
    "created", "pending", "succeeded", "failed", "cancelled", "partially_refunded", "refunded"
]


class OrderPageOut(BaseModel):
    data: list[OrderOut]
    has_more: bool
    next_cursor: str | None


class OrderDetailOut(BaseModel):
    order: OrderOut
    refunds: list[RefundOut]


@router.get("", summary="Payment orders, newest first")
def list_orders(
    _: AdminPrincipal,
    database: DatabaseDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Status | None = None,
    provider: Literal["mock", "razorpay", "stripe"] | None = None,
    user_id: Annotated[
        str | None, Query(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)
    ] = None,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> OrderPageOut:
    start, end = time_range(created_from, created_to)
    with database.read() as session:
        orders, has_more = payments.list_orders(
            session,
            limit=limit,
            before=payments.decode_order_cursor(decode_cursor(cursor)),
            user_id=user_id,
            status=status,
            provider=provider,
            created_from=start,
            created_to=end,
        )
    next_cursor = encode_cursor(payments.order_cursor(orders[-1])) if has_more else None
    return OrderPageOut(
        data=[OrderOut.of(o, with_checkout=False) for o in orders],
        has_more=has_more,
        next_cursor=next_cursor,
    )


@router.get(
    "/{order_id}", summary="One payment order with its refunds", responses=errors.responses(404)
)
def get_order(order_id: OrderId, _: AdminPrincipal, database: DatabaseDep) -> OrderDetailOut:
    with database.read() as session:
        order = payments.get_order(session, order_id)
        refunds = refund_service.refunds_of_order(session, order_id)
    return OrderDetailOut(
        order=OrderOut.of(order, with_checkout=False), refunds=[RefundOut.of(r) for r in refunds]
    )


@router.post(
    "/{order_id}/refund",
    status_code=201,
    responses=errors.responses(*errors.WITH_BODY, *errors.PROVIDER, 402, 404, 409),
    summary="Refund all or part of a paid order; claws back its diamonds in proportion",
)
def refund(
    order_id: OrderId,
    body: RefundIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> RefundResultOut:
    """The refund takes two transactions around the provider's call, so its Idempotency-Key is
    kept on the refund itself: the same key and body return that refund as it now stands."""
    key = None if idempotency_key is None else idempotency.parse_key(idempotency_key)
    made = refund_flows.refund_order(
        database,
        get_providers(request),
        order_id=order_id,
        amount=body.amount,
        reason=body.reason,
        force=body.force,
        actor=principal.id,
        idempotency_key=key,
        clock=clock_of(request),
        writer=get_writer(request),
    )
    with database.read() as session:
        order = payments.get_order(session, order_id)
    return RefundResultOut(refund=RefundOut.of(made), order=OrderOut.of(order, with_checkout=False))
