"""Gifts: send one (user token), list the caller's, and the admin's view with stats."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    DatabaseDep,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_writer,
)
from coffer.api.filters import bounded_range
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import Cursor, Limit, TimeBound, decode_cursor, encode_cursor, time_range
from coffer.gifts import service as gifts
from coffer.gifts.schemas import (
    AdminGiftPageOut,
    GiftOut,
    GiftPageOut,
    GiftStatsOut,
    SendGiftIn,
    SendGiftOut,
)
from coffer.payments.service import decode_order_cursor

router = APIRouter(tags=["gifts"], responses=errors.responses(*errors.AUTHENTICATED))
# A unit of work the writer could not commit (the database away) answers 503: retry it.
MONEY = (*errors.WITH_BODY, 409, 503)
UserIdFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


@router.post(
    "/wallet/send-gift",
    status_code=201,
    response_model=SendGiftOut,
    responses=errors.responses(*MONEY, 402, 404),
    summary="Send diamonds (or a catalog gift) to a host: split with the agency and platform",
)
async def send_gift(
    body: SendGiftIn,
    request: Request,
    principal: UserPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    return await idem.commit(
        get_writer(request),
        gifts.plan_send_gift(
            database,
            shop,
            gift_id=idem.derived_id("gift"),
            sender_id=principal.user_id or "",
            receiver_id=body.receiver_id,
            diamonds=body.diamonds,
            gift_type=body.gift_type,
            message=body.message,
            call_id=body.call_id,
        ),
        status_code=201,
        shape=SendGiftOut.of,
    )


def _next(found: list[gifts.Gift], has_more: bool) -> str | None:
    if not has_more:
        return None
    last = found[-1]
    return encode_cursor([last.created_at.isoformat(), last.id])


@router.get("/wallet/gifts", summary="The caller's gifts, sent or received, newest first")
def my_gifts(
    principal: UserPrincipal,
    database: DatabaseDep,
    direction: Literal["sent", "received"] = "sent",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> GiftPageOut:
    assert principal.user_id is not None
    before = decode_order_cursor(decode_cursor(cursor))
    mine = principal.user_id
    with database.read() as session:
        found, has_more = gifts.list_gifts(
            session,
            limit=limit,
            before=before,
            sender_id=mine if direction == "sent" else None,
            receiver_id=mine if direction == "received" else None,
        )
    return GiftPageOut(
        data=[GiftOut.of(g) for g in found], has_more=has_more, next_cursor=_next(found, has_more)
    )


@router.get("/admin/gifts", summary="Every gift, with count, diamonds and top receivers")
def admin_gifts(
    _: AdminPrincipal,
    database: DatabaseDep,
    request: Request,
    sender_id: UserIdFilter = None,
    receiver_id: UserIdFilter = None,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminGiftPageOut:
    start, end = time_range(created_from, created_to)
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = gifts.list_gifts(
            session,
            limit=limit,
            before=before,
            sender_id=sender_id,
            receiver_id=receiver_id,
            created_from=start,
            created_to=end,
        )
        # The list pages through any range; the stats cover a bounded one (the last 30 days
        # unless from/to say otherwise, at most 366), so they cost the same on any book.
        stats_from, stats_to = bounded_range(start, end, now=clock_of(request)())
        stats = gifts.gift_stats(
            session,
            sender_id=sender_id,
            receiver_id=receiver_id,
            created_from=stats_from,
            created_to=stats_to,
        )
    return AdminGiftPageOut(
        data=[GiftOut.of(g) for g in found],
        has_more=has_more,
        next_cursor=_next(found, has_more),
        stats=GiftStatsOut.of(stats, created_from=stats_from, created_to=stats_to),
    )
