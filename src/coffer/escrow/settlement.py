"""What payments calls for an escrow's order: its payment fills the escrow's own ledger account
(no overdraft) and makes it `held`; a refund of it, booked or undone, moves what is left."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.escrow.records import SYSTEM, check_move, find_by_order, guarded_update
from coffer.ledger import TransferRequest
from coffer.payments.service import PaymentOrder
from coffer.payments.settlement import Accounts
from coffer.wallets import service as wallets

ACCOUNT_KIND = "escrow"


class EscrowSettlement:
    """A paid escrow order fills the escrow's own account; a refund of it empties it."""

    def find_accounts(self, session: Session, order: PaymentOrder) -> Accounts | None:
        escrow = find_by_order(session, order.id)
        clearing = ledger.find_account(
            session, asset=order.currency, owner_type="provider", owner_id=order.provider,
            kind="clearing",
        )  # fmt: skip
        held = ledger.find_account(
            session, asset=order.currency, owner_type="system", owner_id=escrow.id,
            kind=ACCOUNT_KIND,
        )  # fmt: skip
        return None if clearing is None or held is None else (clearing, held)

    def open_accounts(self, session: Session, order: PaymentOrder) -> Accounts:
        escrow = find_by_order(session, order.id)
        clearing = wallets.provider_account(session, order.provider, asset=order.currency)
        held = ledger.open_account(
            session, asset=order.currency, owner_type="system", owner_id=escrow.id,
            kind=ACCOUNT_KIND, flags=ledger.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )  # fmt: skip
        return clearing, held

    def operations(
        self, order: PaymentOrder, accounts: Accounts, *, payment_id: str | None, via: str
    ) -> list[ledger.Operation]:
        clearing, held = accounts
        return [
            TransferRequest(
                debit_account_id=clearing.id,
                credit_account_id=held.id,
                amount=order.amount,
                type="escrow_hold",
                metadata={
                    "order_id": order.id,
                    "escrow_id": held.owner_id,
                    "provider": order.provider,
                    "payment_id": payment_id,
                    "via": via,
                    "description": "Escrow funded",
                },
                idempotency_key=f"{order.id}:payment",
            )
        ]

    def settled(
        self, session: Session, order: PaymentOrder, made: list[ledger.Transfer]
    ) -> list[events.NewEvent]:
        escrow = find_by_order(session, order.id, for_update=True)
        check_move(escrow, "fund", SYSTEM)
        (payment,) = made
        # `guarded_update` emits the escrow's events itself; the order's come back to the caller.
        guarded_update(
            session, escrow, now=payment.created_at, status="held",
            account_id=payment.credit_account_id, held_at=payment.created_at,
        )  # fmt: skip
        return []

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
        escrow = find_by_order(session, order.id, for_update=True)
        ours = escrow.status == "refunding" and escrow.refund_id == refund_id
        if outcome == "failed":
            if ours:
                assert escrow.status_before is not None
                guarded_update(session, escrow, now=now, status=escrow.status_before)
            return
        if outcome == "succeeded":
            refunded = escrow.refunded_amount + amount
            status = escrow.status
            if refunded + escrow.released_amount == escrow.amount:
                status = "refunded"  # ours, or the provider's own refund of all that was left
            elif ours:
                assert escrow.status_before is not None
                status = escrow.status_before
            guarded_update(session, escrow, now=now, status=status, refunded_amount=refunded)
            return
        # reversed: the provider undid a refund after it succeeded, so the money is held again.
        refunded = escrow.refunded_amount - amount
        status = escrow.status
        if status == "refunded":
            status = "partially_released" if escrow.released_amount else "held"
        guarded_update(session, escrow, now=now, status=status, refunded_amount=refunded)


SETTLEMENT = EscrowSettlement()


__all__ = ["ACCOUNT_KIND", "SETTLEMENT", "EscrowSettlement"]
