"""Subscriptions (user token) and the admin's list of them."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    DatabaseDep,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_providers,
    get_writer,
)
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.payments.service import decode_order_cursor
from coffer.subscriptions import flows
from coffer.subscriptions import service as subscriptions
from coffer.subscriptions.schemas import (
    MySubscriptionOut,
    SubscribeIn,
    SubscriptionEnvelope,
    SubscriptionOut,
    SubscriptionPageOut,
)

router = APIRouter(tags=["subscriptions"], responses=errors.responses(*errors.AUTHENTICATED))


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionEnvelope,
    responses=errors.responses(*errors.WITH_BODY, *errors.PROVIDER, 402, 404, 409),
    summary="Subscribe to a plan (from the wallet, or through a provider's recurring billing)",
)
async def subscribe(
    body: SubscribeIn,
    request: Request,
    principal: UserPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    user_id = principal.user_id
    # A provider plan asks the provider before the unit: a replay is answered first, without
    # asking it again (the subscription id, derived from the key, names the same one anyway).
    if (replayed := await run_in_threadpool(idem.replay)) is not None:
        return replayed
    now = clock_of(request)()
    return await idem.commit(
        get_writer(request),
        lambda: flows.plan_subscribe(
            database,
            get_providers(request),
            shop,
            subscription_id=idem.derived_id("sub"),
            user_id=user_id,
            plan_id=body.plan_id,
            pay_with=body.pay_with,
            provider_name=body.provider,
            now=now,
        ),
        status_code=201,
        shape=SubscriptionEnvelope.of,
    )


@router.get("/subscriptions/me", summary="The caller's subscription and whether it is premium")
def my_subscription(
    request: Request, principal: UserPrincipal, database: DatabaseDep
) -> MySubscriptionOut:
    assert principal.user_id is not None
    now = clock_of(request)()
    with database.read() as session:
        sub = subscriptions.current_of_user(session, principal.user_id)
        premium = subscriptions.is_premium(session, principal.user_id, now=now)
    return MySubscriptionOut.of(sub, is_premium=premium)


@router.delete(
    "/subscriptions/me",
    responses=errors.responses(*errors.PROVIDER, 404, 409),
    summary="Cancel at the end of the paid period",
)
def cancel_my_subscription(
    request: Request, principal: UserPrincipal, database: DatabaseDep
) -> MySubscriptionOut:
    assert principal.user_id is not None
    now = clock_of(request)()
    sub = flows.cancel(
        database,
        get_providers(request),
        get_writer(request),
        user_id=principal.user_id,
        now=now,
    )
    return MySubscriptionOut.of(sub, is_premium=sub.is_premium(now))


@router.get("/admin/subscriptions", summary="Subscriptions, newest first")
def admin_subscriptions(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: Literal["pending", "active", "past_due", "canceled", "expired"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SubscriptionPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = subscriptions.list_subscriptions(
            session, limit=limit, before=before, status=status
        )
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return SubscriptionPageOut(
        data=[SubscriptionOut.of(s) for s in found], has_more=has_more, next_cursor=next_cursor
    )
