"""Escrow: a payer's money held in an account of its own, then released to the payee (less the
platform's fee), refunded through the provider, or disputed until an admin decides.

- **Open**: the payer opens a payment order (purpose `escrow`) with any provider; the escrow is
  `pending` until the order is paid. Its settlement (`EscrowSettlement`, the same from verify
  and from a webhook) moves the payment from the provider's clearing account into the escrow's
  own ledger account (no overdraft) and makes it `held`.
- **Release** (payer or admin; in full or in part): the amount less `fee_bps` goes to the
  payee's wallet in the escrow's currency, the fee to the platform's fees account, one linked
  group. `partially_released` until nothing is left, then `released`.
- **Refund** (admin; the payer too while `held`): what is left goes back through the provider
  (`flows.refund_escrow`): `refunding` while the provider works, `refunded` when it is done,
  and back where it was if the provider refuses.
- **Dispute** (payer or payee): `disputed`, and its `auto_release_at` is cleared: nothing moves
  until an admin releases or refunds.
- **Auto-release**: a held escrow whose `auto_release_at` has passed is released by a job
  (`tasks.release_due`).

The record, its state machine (`MOVES`) and its reads are `records.py`'s; the settlement of its
order (`EscrowSettlement`) is `settlement.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer import events, ledger, oplog
from coffer.db import Database, dialect
from coffer.errors import IdempotencyConflict, InvalidState, ValidationFailed
from coffer.escrow.records import (
    ADMIN,
    Escrow,
    check_move,
    get_escrow,
    guarded_update,
    locked_as_planned,
)
from coffer.escrow.tables import escrows
from coffer.ledger import Group, TransferRequest, Work
from coffer.payments.service import PaymentOrder
from coffer.wallets import service as wallets

LEDGER_SOURCE = "escrow"
BPS = 10_000


# ---------------------------------------------------------------------------------------------
# Opening


def escrow_id_for_order(order_id: str) -> str:
    """An escrow is named after its order: a retried request names the same pair."""
    assert order_id.startswith("pay_")
    return f"esc_{order_id[4:]}"


def check_terms(
    *, payer_id: str, payee_id: str, currency: str, fiat: frozenset[str], auto_release_at: Any
) -> None:
    wallets.check_user_id(payee_id, field="body.payee_id")
    if payee_id == payer_id:
        raise ValidationFailed(
            "an escrow needs a payee other than the payer",
            fields=[{"field": "body.payee_id", "message": "must not be the payer"}],
        )
    if currency not in fiat:
        raise ValidationFailed(
            f"escrows are paid in money: one of {sorted(fiat)}",
            fields=[{"field": "body.currency", "message": "unsupported currency"}],
        )
    if auto_release_at is not None and auto_release_at.tzinfo is None:
        raise ValidationFailed(
            "auto_release_at needs a time zone",
            fields=[{"field": "body.auto_release_at", "message": "no time zone"}],
        )


def record_escrow(
    session: Session,
    *,
    order: PaymentOrder,
    payee_id: str,
    fee_bps: int,
    reference: str | None,
    auto_release_at: datetime | None,
    now: datetime,
) -> Escrow:
    """Store the escrow an order pays for; idempotent on the order (a copy finds the first)."""
    assert order.purpose == "escrow" and 0 <= fee_bps <= BPS
    escrow_id = escrow_id_for_order(order.id)
    wallets.ensure_user(session, payee_id, now=now)
    session.execute(
        dialect.insert(session, escrows)
        .values(
            id=escrow_id,
            payer_id=order.user_id,
            payee_id=payee_id,
            amount=order.amount,
            currency=order.currency,
            fee_bps=fee_bps,
            status="pending",
            reference=reference,
            order_id=order.id,
            released_amount=0,
            fee_amount=0,
            refunded_amount=0,
            auto_release_at=auto_release_at,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[escrows.c.id])
    )
    escrow = get_escrow(session, escrow_id)
    if (escrow.payee_id, escrow.reference, escrow.auto_release_at) != (
        payee_id,
        reference,
        auto_release_at,
    ):
        raise IdempotencyConflict("this escrow was opened with other terms", escrow_id=escrow_id)
    return escrow


# ---------------------------------------------------------------------------------------------
# Release and dispute: units of work for the writer


@dataclass(frozen=True, slots=True)
class _ReleaseAccounts:
    escrow: int
    payee: int
    fees: int


def _release_accounts(database: Database, escrow: Escrow) -> _ReleaseAccounts:
    assert escrow.account_id is not None  # held: funded into its account

    def find(session: Session) -> _ReleaseAccounts | None:
        payee = ledger.find_account(
            session, asset=escrow.currency, owner_type="user", owner_id=escrow.payee_id,
            kind="wallet",
        )  # fmt: skip
        fees = ledger.find_account(
            session, asset=escrow.currency, owner_type="platform",
            owner_id=wallets.PLATFORM_OWNER_ID, kind="fees",
        )  # fmt: skip
        if payee is None or fees is None:
            return None
        assert escrow.account_id is not None
        return _ReleaseAccounts(escrow.account_id, payee.id, fees.id)

    with database.read() as session:
        found = find(session)
    if found is not None:
        return found
    with database.unit_of_work() as session:
        payee = wallets.wallet_account(session, escrow.payee_id, escrow.currency)
        fees = wallets.platform_account(session, kind="fees", asset=escrow.currency)
    return _ReleaseAccounts(escrow.account_id, payee.id, fees.id)


def fee_of(amount: int, fee_bps: int) -> int:
    """The platform's share of a release, rounded down (the payee keeps the remainder)."""
    assert amount >= 0 and 0 <= fee_bps <= BPS
    return amount * fee_bps // BPS


def plan_release(
    database: Database,
    *,
    escrow_id: str,
    role: str,
    amount: int | None,
    move: str = "release",
    now: datetime | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> Work:
    """The unit that releases `amount` (default: all that is left) to the payee, less the fee.

    `move` is `auto_release` for the job, which also needs `now`: under the lock the escrow must
    still be due (a dispute in between clears its `auto_release_at`). An admin's release names
    its `actor` and `reason`, which go into the operator audit trail in the same commit."""
    assert move in ("release", "auto_release") and (move == "release" or now is not None)
    assert role != ADMIN or (actor is not None and reason is not None)
    with database.read() as session:
        escrow = get_escrow(session, escrow_id)
    check_move(escrow, move, role)
    gross = escrow.left if amount is None else amount
    if not 0 < gross <= escrow.left:
        raise ValidationFailed(
            f"a release takes 1 to {escrow.left}, what the escrow holds",
            fields=[{"field": "body.amount", "message": f"at most {escrow.left}"}],
            left=escrow.left,
        )
    fee = fee_of(gross, escrow.fee_bps)
    accounts = _release_accounts(database, escrow)
    key = f"{escrow.id}:release@{escrow.released_amount}"
    meta = {"escrow_id": escrow.id, "by": role}
    operations = [
        TransferRequest(
            debit_account_id=accounts.escrow, credit_account_id=debit_to, amount=part,
            type=kind, metadata={**meta, "description": text}, idempotency_key=f"{key}:{leg}",
        )
        for leg, debit_to, part, kind, text in (
            ("payee", accounts.payee, gross - fee, "escrow_release", "Escrow released"),
            ("fee", accounts.fees, fee, "fee", "Escrow fee"),
        )
        if part > 0
    ]  # fmt: skip

    def before(session: Session) -> Escrow:
        locked = locked_as_planned(session, escrow, move, role)
        if move == "auto_release":
            assert now is not None
            if locked.auto_release_at is None or locked.auto_release_at > now:
                raise InvalidState(f"escrow {escrow.id} is not due for release")
        return locked

    def after(session: Session, locked: Escrow, made: list[ledger.Transfer]) -> Escrow:
        when = made[0].created_at
        released = locked.released_amount + gross
        status = (
            "released"
            if released + locked.refunded_amount == locked.amount
            else ("partially_released")
        )
        moved = guarded_update(
            session, locked, now=when, status=status, released_amount=released,
            fee_amount=locked.fee_amount + fee,
        )  # fmt: skip
        if role == ADMIN:
            assert actor is not None
            record_operator_move(
                session, moved, actor=actor, action="escrow.release", reason=reason, now=when,
                details={"amount": gross, "fee": fee, "status": moved.status},
            )  # fmt: skip
        payee_leg = next((t for t in made if t.credit_account_id == accounts.payee), None)
        if payee_leg is not None:
            events.emit(
                session,
                [
                    events.NewEvent(
                        escrow.payee_id,
                        "wallet.updated",
                        {
                            "kind": "wallet",
                            "asset": escrow.currency,
                            "posted": payee_leg.credit_balance_after,
                            "cause": escrow.id,
                        },
                    )
                ],
                now=when,
            )
        return moved

    return Work(
        Group(tuple(operations), LEDGER_SOURCE),
        before=before,
        after=after,
        claims=frozenset({f"escrow:{escrow.id}"}),
    )


def plan_dispute(database: Database, *, escrow_id: str, role: str, reason: str, clock: Any) -> Work:
    """The unit that marks the escrow disputed and stops its auto-release (nothing moves)."""
    with database.read() as session:
        escrow = get_escrow(session, escrow_id)
    check_move(escrow, "dispute", role)

    def before(session: Session) -> Escrow:
        return locked_as_planned(session, escrow, "dispute", role)

    def after(session: Session, locked: Escrow, _: list[ledger.Transfer]) -> Escrow:
        return guarded_update(
            session, locked, now=clock(), status="disputed", status_before=locked.status,
            dispute_reason=reason, disputed_by=role, auto_release_at=None,
        )  # fmt: skip

    return Work(None, before=before, after=after, claims=frozenset({f"escrow:{escrow.id}"}))


def record_operator_move(
    session: Session,
    escrow: Escrow,
    *,
    actor: str,
    action: str,
    reason: str | None,
    details: dict[str, Any],
    now: datetime,
) -> None:
    """An admin's move on an escrow, in the operator audit trail (in the move's own unit)."""
    oplog.record(
        session,
        actor=actor,
        action=action,
        subject_type="escrow",
        subject_id=escrow.id,
        reason=reason,
        details={"payer_id": escrow.payer_id, "payee_id": escrow.payee_id, **details},
        now=now,
    )


def mark_refunding(session: Session, escrow: Escrow, *, refund_id: str, now: datetime) -> Escrow:
    """A refund of what is left is with the provider (its row was just begun, in this unit)."""
    return guarded_update(
        session, escrow, now=now, status="refunding", status_before=escrow.status,
        refund_id=refund_id,
    )  # fmt: skip


__all__ = [
    "BPS",
    "LEDGER_SOURCE",
    "check_terms",
    "escrow_id_for_order",
    "fee_of",
    "mark_refunding",
    "plan_dispute",
    "plan_release",
    "record_escrow",
    "record_operator_move",
]
