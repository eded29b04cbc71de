"""Settling a paid order: what it bought, booked once, by the module that sold it.

An order is paid through the client's verify (`flows.plan_confirmation`) or the provider's
webhook (`webhooks.service`), whichever comes first; both end here, so both settle it the same
way. What the order bought is settled by one `Settlement` per purpose (DESIGN.md "Payments"):
diamonds (`topup`, below) credit the buyer's wallet; an escrow funding (`coffer.escrow`) fills
the escrow's own account; each module above payments registers its own at start-up
(`server.assemble`), so payments never imports them. An order whose purpose has no settlement
is refused, never credited as diamonds.

Every settlement's first transfer is the payment itself, out of the provider's clearing account:
its id is the order's `payment_transfer_id`, and it is the transfer a refund reverses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.config import DIAMOND
from coffer.db import Database
from coffer.errors import InvalidState
from coffer.ledger import TransferRequest
from coffer.payments.service import (
    LEDGER_SOURCE,
    SETTLED,
    PaymentOrder,
    get_order,
    order_event,
    set_status,
)
from coffer.wallets.service import (
    PLATFORM_OWNER_ID,
    platform_account,
    provider_account,
    system_account,
    wallet_account,
)

Accounts = tuple[ledger.Account, ...]


class Settlement(Protocol):
    """What one purpose of order does when it is paid, and when its money goes back."""

    def find_accounts(self, session: Session, order: PaymentOrder) -> Accounts | None:
        """The accounts `operations` moves between, if they all exist (a read)."""

    def open_accounts(self, session: Session, order: PaymentOrder) -> Accounts:
        """The same accounts, opened where missing (a short write of its own)."""

    def operations(
        self, order: PaymentOrder, accounts: Accounts, *, payment_id: str | None, via: str
    ) -> list[ledger.Operation]:
        """The linked group that books the payment (first) and what it bought."""

    def settled(
        self, session: Session, order: PaymentOrder, made: list[ledger.Transfer]
    ) -> list[events.NewEvent]:
        """The purpose's own rows, in the credit's transaction; the events to emit."""

    def refund_booked(
        self,
        session: Session,
        order: PaymentOrder,
        *,
        refund_id: str,
        amount: int,
        outcome: str,
        now: datetime,
    ) -> None:
        """A refund of the order `succeeded`, `failed` or was `reversed` after succeeding (its
        ledger moves are made already, in this transaction)."""


_SETTLEMENTS: dict[str, Settlement] = {}


def register(purpose: str, settlement: Settlement) -> None:
    """Name the module that settles orders of `purpose` (at start-up; idempotent)."""
    existing = _SETTLEMENTS.get(purpose)
    assert existing is None or existing is settlement, f"{purpose} is settled elsewhere already"
    _SETTLEMENTS[purpose] = settlement


def settlement_for(purpose: str) -> Settlement:
    settlement = _SETTLEMENTS.get(purpose)
    if settlement is None:
        raise InvalidState(f"nothing settles orders for {purpose}", purpose=purpose)
    return settlement


def refund_booked(
    session: Session,
    order: PaymentOrder,
    *,
    refund_id: str,
    amount: int,
    outcome: str,
    now: datetime,
) -> None:
    """Tell the order's module what a refund did (refunds.py calls it in the refund's unit)."""
    assert outcome in ("succeeded", "failed", "reversed")
    settlement_for(order.purpose).refund_booked(
        session, order, refund_id=refund_id, amount=amount, outcome=outcome, now=now
    )


# ---------------------------------------------------------------------------------------------
# Crediting once, from verify (a unit of work) or from a webhook (inside the inbox's unit)


def _lock_creditable(session: Session, order_id: str) -> PaymentOrder | None:
    """The order locked for crediting; None if it was settled already."""
    order = get_order(session, order_id, for_update=True)
    if order.status in SETTLED:
        return None
    return order


def _book_credit(
    session: Session,
    order: PaymentOrder,
    made: list[ledger.Transfer],
    *,
    payment_id: str | None,
) -> PaymentOrder:
    """The order's side of a credit the ledger just made: its new status, and its events."""
    now = made[0].created_at
    order = set_status(
        session,
        order,
        "succeeded",
        now,
        provider_payment_id=payment_id or order.provider_payment_id,
        payment_transfer_id=made[0].id,
        credit_transfer_id=made[1].id if len(made) > 1 else None,
        succeeded_at=now,
        failure_reason=None,
    )
    settled = settlement_for(order.purpose).settled(session, order, made)
    events.emit(session, [order_event(order), *settled], now=now)
    return order


def credit_order(
    session: Session, *, order_id: str, payment_id: str | None, via: str, now: datetime
) -> tuple[PaymentOrder, bool]:
    """Mark the order paid and settle it, once, in the caller's transaction (which holds the
    ledger's write lock until it ends: run it through the writer); returns (order, whether this
    call credited)."""
    order = _lock_creditable(session, order_id)
    if order is None:
        return get_order(session, order_id), False
    settlement = settlement_for(order.purpose)
    operations = settlement.operations(
        order, settlement.open_accounts(session, order), payment_id=payment_id, via=via
    )
    made = ledger.execute(session, operations, source=LEDGER_SOURCE, now=now)
    return _book_credit(session, order, made, payment_id=payment_id), True


def plan_credit(
    database: Database, *, order_id: str, payment_id: str | None, via: str
) -> ledger.Work:
    """`credit_order` as a unit of work for the writer: its group is applied in a shared batch.

    Planned from a read (the accounts are opened first if the order's are new); under the write
    lock `before` checks that the order is still unsettled, else the unit answers without
    moving anything. Its answer is (order, whether this unit credited it).
    """
    with database.read() as session:
        order = get_order(session, order_id)
        settlement = settlement_for(order.purpose)
        accounts = settlement.find_accounts(session, order)
    if accounts is None:
        with database.unit_of_work() as session:
            accounts = settlement.open_accounts(session, order)
    operations = settlement.operations(order, accounts, payment_id=payment_id, via=via)

    def before(session: Session) -> Any:
        locked = _lock_creditable(session, order_id)
        if locked is None:
            return ledger.Done((get_order(session, order_id), False))
        return locked

    def after(
        session: Session, locked: PaymentOrder, made: list[ledger.Transfer]
    ) -> tuple[PaymentOrder, bool]:
        return _book_credit(session, locked, made, payment_id=payment_id), True

    return ledger.Work(
        ledger.Group(tuple(operations), LEDGER_SOURCE),
        before=before,
        after=after,
        claims=frozenset({f"order:{order_id}"}),
    )


# ---------------------------------------------------------------------------------------------
# Top-ups: diamonds (and the package's bonus) into the buyer's wallet


class TopupSettlement:
    """A top-up pays the platform's revenue and issues the diamonds it bought."""

    def find_accounts(self, session: Session, order: PaymentOrder) -> Accounts | None:
        found = [
            ledger.find_account(
                session, asset=asset, owner_type=owner, owner_id=owner_id, kind=kind
            )
            for asset, owner, owner_id, kind in (
                (order.currency, "provider", order.provider, "clearing"),
                (order.currency, "platform", PLATFORM_OWNER_ID, "revenue"),
                (DIAMOND, "system", PLATFORM_OWNER_ID, "issuance"),
                (DIAMOND, "user", order.user_id, "wallet"),
            )
        ]
        accounts = tuple(a for a in found if a is not None)
        return accounts if len(accounts) == len(found) else None

    def open_accounts(self, session: Session, order: PaymentOrder) -> Accounts:
        return (
            provider_account(session, order.provider, asset=order.currency),
            platform_account(session, kind="revenue", asset=order.currency),
            system_account(session, kind="issuance", asset=DIAMOND),
            wallet_account(session, order.user_id, DIAMOND),
        )

    def operations(
        self, order: PaymentOrder, accounts: Accounts, *, payment_id: str | None, via: str
    ) -> list[ledger.Operation]:
        clearing, revenue, issuance, wallet = accounts
        meta = {
            "order_id": order.id,
            "provider": order.provider,
            "payment_id": payment_id,
            "via": via,
        }
        operations: list[ledger.Operation] = [
            TransferRequest(
                debit_account_id=clearing.id, credit_account_id=revenue.id, amount=order.amount,
                type="purchase", metadata=meta, idempotency_key=f"{order.id}:payment",
            ),
            TransferRequest(
                debit_account_id=issuance.id, credit_account_id=wallet.id, amount=order.diamonds,
                type="purchase", idempotency_key=f"{order.id}:credit",
                metadata={**meta, "package_id": order.package_id,
                          "description": f"Top-up: {order.diamonds} diamonds"},
            ),
        ]  # fmt: skip
        if order.bonus:
            operations.append(
                TransferRequest(
                    debit_account_id=issuance.id, credit_account_id=wallet.id, amount=order.bonus,
                    type="bonus", idempotency_key=f"{order.id}:bonus",
                    metadata={**meta, "package_id": order.package_id,
                              "description": f"Bonus: {order.bonus} diamonds"},
                )
            )  # fmt: skip
        return operations

    def settled(
        self, session: Session, order: PaymentOrder, made: list[ledger.Transfer]
    ) -> list[events.NewEvent]:
        wallet_after = made[-1].credit_balance_after
        return [
            events.NewEvent(
                order.user_id,
                "wallet.updated",
                {"kind": "wallet", "asset": DIAMOND, "posted": wallet_after, "cause": order.id},
            )
        ]

    def refund_booked(
        self,
        session: Session,
        order: PaymentOrder,
        *,
        refund_id: str,
        amount: int,
        outcome: str,
        now: datetime,
    ) -> None:
        """Nothing more: refunds.py claws the diamonds back itself."""


TOPUP = TopupSettlement()
register("topup", TOPUP)


__all__ = [
    "TOPUP",
    "Accounts",
    "Settlement",
    "TopupSettlement",
    "credit_order",
    "plan_credit",
    "refund_booked",
    "register",
    "settlement_for",
]
