"""Payment orders: what a user buys, what it costs, and crediting it exactly once.

An order moves `created -> pending -> succeeded | failed | cancelled`, then
`partially_refunded | refunded`. It is credited when the client's confirmation is verified or
when the provider's webhook says so, whichever comes first; the other is a no-op. Three things
make "exactly once" hold, each enough on its own:
1. the order row is locked while its state changes (FOR UPDATE; SQLite: the write transaction);
2. the state only moves forward (`_RANK`): a late or repeated event never moves it back;
3. the ledger transfers carry idempotency keys derived from the order id, so even a second
   attempt that got past 1 and 2 would return the first credit instead of making another.

Crediting (what the order bought, settled by the module that sold it) is `settlement.py`.
Nothing here calls a provider: network calls happen outside any transaction (`flows.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Row, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.config import ShopConfig
from coffer.db import dialect, pages
from coffer.errors import IdempotencyConflict, NotFound, ValidationFailed
from coffer.kit.ids import new_id
from coffer.kit.money import ceil_div
from coffer.payments.tables import payment_orders
from coffer.providers.base import ProviderOrder
from coffer.wallets.service import ensure_user

LEDGER_SOURCE = "payments"
LIST_LIMIT_MAX = 500

STATUSES = (
    "created",
    "pending",
    "succeeded",
    "failed",
    "cancelled",
    "partially_refunded",
    "refunded",
)
SETTLED = frozenset({"succeeded", "partially_refunded", "refunded"})
# States only move to a higher rank. failed and cancelled rank below succeeded because a
# provider may report a failure and later a capture of the same payment (Razorpay does): money
# that arrived is credited.
_RANK = {
    "created": 0,
    "pending": 1,
    "failed": 2,
    "cancelled": 2,
    "succeeded": 3,
    "partially_refunded": 4,
    "refunded": 5,
}


@dataclass(frozen=True, slots=True)
class Quote:
    """What a top-up costs and gives."""

    amount: int  # minor units of `currency`
    currency: str
    diamonds: int
    bonus: int
    package_id: str | None


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    id: str
    user_id: str
    purpose: str
    provider: str
    provider_order_id: str | None
    provider_payment_id: str | None
    status: str
    amount: int
    currency: str
    diamonds: int
    bonus: int
    package_id: str | None
    refunded_amount: int
    refund_pending_amount: int
    diamonds_clawed_back: int
    failure_reason: str | None
    payment_transfer_id: int | None
    credit_transfer_id: int | None
    checkout: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None

    @property
    def diamonds_total(self) -> int:
        return self.diamonds + self.bonus


def order_from_row(row: Row[Any]) -> PaymentOrder:
    m = row._mapping
    return PaymentOrder(
        id=m["id"],
        user_id=m["user_id"],
        purpose=m["purpose"],
        provider=m["provider"],
        provider_order_id=m["provider_order_id"],
        provider_payment_id=m["provider_payment_id"],
        status=m["status"],
        amount=m["amount"],
        currency=m["currency"],
        diamonds=m["diamonds"],
        bonus=m["bonus"],
        package_id=m["package_id"],
        refunded_amount=m["refunded_amount"],
        refund_pending_amount=m["refund_pending_amount"],
        diamonds_clawed_back=m["diamonds_clawed_back"],
        failure_reason=m["failure_reason"],
        payment_transfer_id=m["payment_transfer_id"],
        credit_transfer_id=m["credit_transfer_id"],
        checkout=json.loads(m["checkout"]),
        metadata=json.loads(m["metadata"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        succeeded_at=m["succeeded_at"],
    )


# ---------------------------------------------------------------------------------------------
# Quotes


def quote_topup(
    shop: ShopConfig,
    *,
    package_id: str | None = None,
    diamonds: int | None = None,
    currency: str | None = None,
) -> Quote:
    """Price a top-up of a configured package, or of a number of diamonds at the set rate."""
    if (package_id is None) == (diamonds is None):
        raise ValidationFailed(
            "give either package_id or diamonds", fields=[{"field": "body", "message": "one of"}]
        )
    if package_id is not None:
        package = shop.package(package_id)
        if package is None:
            raise NotFound(f"no package {package_id!r}", package_id=package_id)
        if currency is not None and currency != package.currency:
            raise ValidationFailed(
                f"package {package_id} is sold in {package.currency}",
                fields=[{"field": "body.currency", "message": f"must be {package.currency}"}],
            )
        return Quote(package.price, package.currency, package.diamonds, package.bonus, package.id)
    assert diamonds is not None
    currency = currency or shop.topup.default_currency
    rate = shop.topup.diamonds_per_unit.get(currency)
    if rate is None:
        raise ValidationFailed(
            f"top-ups are not sold in {currency}",
            fields=[{"field": "body.currency", "message": "unsupported currency"}],
        )
    scale = shop.assets[currency].scale
    # The buyer pays for every diamond: round the price up to the next minor unit.
    amount = ceil_div(diamonds * 10**scale, rate)
    minimum = shop.topup.minimum.get(currency, 1)
    if amount < minimum:
        raise ValidationFailed(
            f"the smallest top-up is {minimum} minor units of {currency}",
            fields=[{"field": "body.diamonds", "message": f"costs {amount}, below {minimum}"}],
            minimum=minimum,
            amount=amount,
        )
    if amount > ledger.AMOUNT_MAX:
        raise ValidationFailed(
            "that top-up is too large",
            fields=[{"field": "body.diamonds", "message": "too large"}],
        )
    return Quote(amount, currency, diamonds, 0, None)


# ---------------------------------------------------------------------------------------------
# Orders


def new_order_id() -> str:
    return new_id("pay")


_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # kit.ids' alphabet: the same shape of id
_ID_CHARS = 20


def order_id_for_request(digest_hex: str) -> str:
    """The order id for a request known by a digest (of its Idempotency-Key): the same digest,
    the same id, so a copy or a retry names the order the first one opened."""
    value = int(digest_hex, 16)
    chars = []
    for _ in range(_ID_CHARS):
        chars.append(_ID_ALPHABET[value & 31])
        value >>= 5
    return f"pay_{''.join(chars)}"


def record_order(
    session: Session,
    *,
    order_id: str,
    user_id: str,
    purpose: str,
    quote: Quote,
    provider_order: ProviderOrder,
    now: datetime,
    metadata: Mapping[str, Any] | None = None,
) -> PaymentOrder:
    """Store an order the provider has opened; idempotent on `order_id`.

    Copies of one request derive the same order id (`order_id_for_request`): the first inserts,
    the others find its row and get that order back (on PostgreSQL a copy waits on the unique
    index until the first commits). A row with that id for another user, purpose or price is a
    409, never a second order.
    """
    if provider_order.amount != quote.amount or provider_order.currency != quote.currency:
        raise ledger.InvariantViolated(
            f"the provider opened {provider_order.amount} {provider_order.currency} for a quote of "
            f"{quote.amount} {quote.currency}"
        )
    ensure_user(session, user_id)
    inserted = session.execute(
        dialect.insert(session, payment_orders)
        .values(
            id=order_id,
            user_id=user_id,
            purpose=purpose,
            provider=provider_order.provider,
            provider_order_id=provider_order.provider_order_id,
            status="created",
            amount=quote.amount,
            currency=quote.currency,
            diamonds=quote.diamonds,
            bonus=quote.bonus,
            package_id=quote.package_id,
            checkout=json.dumps(dict(provider_order.checkout), sort_keys=True),
            metadata=json.dumps(dict(metadata or {}), sort_keys=True),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[payment_orders.c.id])
    )
    order = get_order(session, order_id)
    if isinstance(inserted, CursorResult) and inserted.rowcount == 1:
        return order
    same = (order.user_id, order.purpose, order.provider, order.amount, order.currency) == (
        user_id,
        purpose,
        provider_order.provider,
        quote.amount,
        quote.currency,
    )
    if not same:
        raise IdempotencyConflict(
            "this order id was already used for a different order", order_id=order_id
        )
    return order


def get_order(session: Session, order_id: str, *, for_update: bool = False) -> PaymentOrder:
    query = select(payment_orders).where(payment_orders.c.id == order_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no payment order {order_id!r}", order_id=order_id)
    return order_from_row(row)


def get_user_order(session: Session, *, order_id: str, user_id: str) -> PaymentOrder:
    """A user's own order; someone else's is reported as not found (ids are not secrets, but
    their existence is nobody else's business)."""
    order = get_order(session, order_id)
    if order.user_id != user_id:
        raise NotFound(f"no payment order {order_id!r}", order_id=order_id)
    return order


def find_by_provider_order(
    session: Session, *, provider: str, provider_order_id: str, for_update: bool = False
) -> PaymentOrder | None:
    query = select(payment_orders).where(
        payment_orders.c.provider == provider,
        payment_orders.c.provider_order_id == provider_order_id,
    )
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    return None if row is None else order_from_row(row)


def find_by_payment(session: Session, *, provider: str, payment_id: str) -> PaymentOrder | None:
    """The order a provider's payment paid: by the payment id it named, or (Stripe, whose
    payment id is the PaymentIntent, and an order not credited yet) by its order id."""
    row = session.execute(
        select(payment_orders)
        .where(
            payment_orders.c.provider == provider,
            (payment_orders.c.provider_payment_id == payment_id)
            | (payment_orders.c.provider_order_id == payment_id),
        )
        .limit(1)
    ).first()
    return None if row is None else order_from_row(row)


def list_orders(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    user_id: str | None = None,
    status: str | None = None,
    provider: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[list[PaymentOrder], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (orders, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(payment_orders),
        at=payment_orders.c.created_at,
        id_=payment_orders.c.id,
        limit=limit,
        before=before,
        equal=(
            (payment_orders.c.user_id, user_id),
            (payment_orders.c.status, status),
            (payment_orders.c.provider, provider),
        ),
        created_from=created_from,
        created_to=created_to,
    )
    return [order_from_row(r) for r in rows], has_more


def set_status(
    session: Session, order: PaymentOrder, status: str, now: datetime, **values: Any
) -> PaymentOrder:
    if _RANK[status] < _RANK[order.status]:  # a state never moves backwards (STYLE habit 9)
        raise ledger.InvariantViolated(f"order {order.id}: {order.status} -> {status} goes back")
    result = session.execute(
        update(payment_orders)
        .where(payment_orders.c.id == order.id, payment_orders.c.status == order.status)
        .values(status=status, updated_at=now, **values)
    )
    # Paired assertion: the row was locked by the caller, so nobody moved it in between.
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise ledger.InvariantViolated(f"order {order.id} changed under its lock")
    return get_order(session, order.id)


def order_event(order: PaymentOrder) -> events.NewEvent:
    """`payment.updated`: what a client shows of its order's new state."""
    return events.NewEvent(
        order.user_id,
        "payment.updated",
        {
            "order_id": order.id,
            "status": order.status,
            "amount": order.amount,
            "currency": order.currency,
            "diamonds": order.diamonds_total,
            "refunded_amount": order.refunded_amount,
        },
    )


def mark_pending(session: Session, *, order_id: str, now: datetime) -> PaymentOrder:
    order = get_order(session, order_id, for_update=True)
    if _RANK[order.status] >= _RANK["pending"]:
        return order
    order = set_status(session, order, "pending", now)
    events.emit(session, [order_event(order)], now=now)
    return order


def mark_failed(
    session: Session, *, order_id: str, reason: str | None, payment_id: str | None, now: datetime
) -> PaymentOrder:
    """A failure never undoes a success: a settled order stays settled."""
    order = get_order(session, order_id, for_update=True)
    if _RANK[order.status] >= _RANK["failed"]:
        return order
    order = set_status(
        session,
        order,
        "failed",
        now,
        failure_reason=(reason or "payment failed")[:255],
        provider_payment_id=payment_id or order.provider_payment_id,
    )
    events.emit(session, [order_event(order)], now=now)
    return order


def mark_cancelled(session: Session, *, order_id: str, now: datetime) -> PaymentOrder:
    order = get_order(session, order_id, for_update=True)
    if _RANK[order.status] >= _RANK["cancelled"]:
        return order
    order = set_status(session, order, "cancelled", now)
    events.emit(session, [order_event(order)], now=now)
    return order


def orders_by_user(session: Session, user_id: str, *, limit: int = 100) -> list[PaymentOrder]:
    orders, _ = list_orders(session, limit=limit, user_id=user_id)
    return orders


def order_cursor(order: PaymentOrder) -> list[str]:
    """The keyset position after `order`, for list pages (opaque to clients)."""
    return [order.created_at.isoformat(), order.id]


def decode_order_cursor(value: object) -> tuple[datetime, str] | None:
    if value is None:
        return None
    # Checked with `if`s, not asserts: this is a client's input, and `python -O` strips asserts.
    invalid = ValidationFailed(
        "cursor is not one this API gave out",
        fields=[{"field": "query.cursor", "message": "invalid cursor"}],
    )
    if not (isinstance(value, list) and len(value) == 2):
        raise invalid
    created_at, order_id = value
    if not (isinstance(created_at, str) and isinstance(order_id, str)):
        raise invalid
    try:
        parsed = datetime.fromisoformat(created_at)
    except ValueError as exc:
        raise invalid from exc
    if parsed.tzinfo is None:
        raise invalid
    return parsed, order_id
