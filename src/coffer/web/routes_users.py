"""A user: balances, ledger history, a balance at an instant, orders (with refunds), gifts,
calls, payouts, subscription, KYC; freeze and unfreeze."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from coffer import wallets
from coffer.audit import users as audit_users
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN, is_user_id
from coffer.calls import service as calls
from coffer.errors import CofferError, ValidationFailed
from coffer.kyc import service as kyc
from coffer.ledger import LedgerError
from coffer.payments import refund_flows
from coffer.payments import service as payments
from coffer.payments.schemas import ORDER_ID_LENGTH_MAX, ORDER_ID_PATTERN
from coffer.subscriptions import records as subscriptions
from coffer.wallets import history
from coffer.web import paging, state
from coffer.web.render import done, page, refused, secure
from coffer.web.session import FormDep, OperatorDep

router = APIRouter()
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]
OrderIdPath = Annotated[str, Path(pattern=ORDER_ID_PATTERN, max_length=ORDER_ID_LENGTH_MAX)]
SECTION_SIZE = 20
REFUNDABLE = ("succeeded", "partially_refunded")


@router.get("/users")
def find_user(
    request: Request,
    operator: OperatorDep,
    user_id: Annotated[str | None, Query(max_length=USER_ID_LENGTH_MAX)] = None,
) -> Response:
    wanted = (user_id or "").strip()
    if wanted and is_user_id(wanted):
        return secure(RedirectResponse(f"/console/users/{wanted}", status_code=303))
    error = "A user id is 1 to 64 of A-Z a-z 0-9 _ . : -" if wanted else None
    return page(request, "users.html", operator, error=error, wanted=wanted)


def _statement_cursor(cursor: str | None) -> tuple[int, int] | None:
    value = paging.decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise ValidationFailed("this page link is not one the console gave out")
    return value[0], value[1]


@router.get("/users/{user_id}")
def user_page(
    request: Request,
    operator: OperatorDep,
    user_id: UserIdPath,
    cursor: Annotated[str | None, Query(max_length=paging.CURSOR_LENGTH_MAX)] = None,
    at: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    try:
        position = _statement_cursor(cursor)
        instant = paging.parse_time(at, name="at")
    except CofferError as exc:
        return refused(request, operator, exc)
    with state.database(request).read() as session:
        if wallets.find_user(session, user_id) is None:
            return page(request, "user_missing.html", operator, status_code=404, user_id=user_id)
        # The same read model as GET /admin/users/{id}/ledger (recent lists and the summary),
        # with the statement paged on and what that endpoint leaves to other lists.
        ledger_view = audit_users.user_ledger(session, user_id)
        statement = history.statement(session, user_id, limit=paging.PAGE_SIZE, cursor=position)
        balances_at = [] if instant is None else audit_users.balances_at(session, user_id, instant)
        made_calls, _ = calls.list_calls(session, limit=SECTION_SIZE, caller_id=user_id)
        hosted, _ = calls.list_calls(session, limit=SECTION_SIZE, host_id=user_id)
        subscription = subscriptions.current_of_user(session, user_id)
        kyc_record = kyc.find_kyc(session, user_id)
        balance = history.balance(session, user_id)
    next_cursor = (
        paging.encode_cursor(list(statement.next_cursor)) if statement.next_cursor else None
    )
    return page(
        request,
        "user.html",
        operator,
        user=ledger_view.user,
        summary=ledger_view.summary,
        balance=balance,
        statement=statement.items,
        next_cursor=next_cursor,
        at=instant,
        balances_at=balances_at,
        orders=ledger_view.payment_orders,
        refundable=REFUNDABLE,
        gifts_sent=ledger_view.gifts_sent,
        gifts_received=ledger_view.gifts_received,
        calls=sorted([*made_calls, *hosted], key=lambda c: c.started_at, reverse=True),
        payouts=ledger_view.payouts,
        subscription=subscription,
        kyc=kyc_record,
        form_key=secrets.token_urlsafe(18),
    )


def _set_frozen(request: Request, operator: OperatorDep, form: dict[str, str], *, user_id: str,
                frozen: bool) -> Response:  # fmt: skip
    try:
        reason = paging.reason(form)
        with state.database(request).unit_of_work() as session:
            wallets.set_frozen(
                session,
                user_id,
                frozen=frozen,
                reason=reason,
                actor=operator.key_id,
                now=state.clock(request)(),
            )
    except CofferError as exc:
        return refused(request, operator, exc)
    return done(f"/console/users/{user_id}", "frozen" if frozen else "unfrozen")


@router.post("/users/{user_id}/freeze")
def freeze(request: Request, operator: OperatorDep, form: FormDep, user_id: UserIdPath) -> Response:
    return _set_frozen(request, operator, form, user_id=user_id, frozen=True)


@router.post("/users/{user_id}/unfreeze")
def unfreeze(
    request: Request, operator: OperatorDep, form: FormDep, user_id: UserIdPath
) -> Response:
    return _set_frozen(request, operator, form, user_id=user_id, frozen=False)


@router.post("/orders/{order_id}/refund")
def refund_order(
    request: Request, operator: OperatorDep, form: FormDep, order_id: OrderIdPath
) -> Response:
    """The API's refund (payments.refund_flows.refund_order): the form's key makes a double submit
    return the first refund instead of making a second."""
    try:
        made = refund_flows.refund_order(
            state.database(request),
            state.providers(request),
            order_id=order_id,
            amount=paging.amount(form.get("amount"), name="amount"),
            reason=paging.reason(form),
            force=False,
            actor=operator.key_id,
            idempotency_key=state.form_key(form),
            clock=state.clock(request),
            writer=state.writer(request),
        )
        with state.database(request).read() as session:
            order = payments.get_order(session, made.order_id)
    except (CofferError, LedgerError) as exc:
        return refused(request, operator, exc)
    return done(f"/console/users/{order.user_id}", "refunded")
