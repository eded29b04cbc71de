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

The state machine is one table, `MOVES`: for each move, the states it may leave and who may
make it from each. Any other move is 409 `invalid_state` and moves nothing; a party who may
never make a move (the payee releasing) is 403 `forbidden`; anyone else sees 404.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Row, or_, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger, oplog
from coffer.db import Database, dialect, pages
from coffer.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from coffer.escrow.tables import escrows
from coffer.ledger import Group, TransferRequest, Work
from coffer.payments.service import PaymentOrder
from coffer.payments.settlement import Accounts
from coffer.wallets import service as wallets

LEDGER_SOURCE = "escrow"
LIST_LIMIT_MAX = 500
ACCOUNT_KIND = "escrow"
BPS = 10_000

PAYER, PAYEE, ADMIN, SYSTEM = "payer", "payee", "admin", "system"
_PAYER_ADMIN = frozenset({PAYER, ADMIN})
_PARTIES = frozenset({PAYER, PAYEE})
_ADMIN = frozenset({ADMIN})
_SYSTEM = frozenset({SYSTEM})

# move -> {state it may leave: who may make it from there}. The one table of the state machine.
MOVES: dict[str, dict[str, frozenset[str]]] = {
    "fund": {"pending": _SYSTEM},
    "release": {"held": _PAYER_ADMIN, "partially_released": _PAYER_ADMIN, "disputed": _ADMIN},
    "auto_release": {"held": _SYSTEM, "partially_released": _SYSTEM},
    "refund": {"held": _PAYER_ADMIN, "partially_released": _ADMIN, "disputed": _ADMIN},
    "dispute": {"held": _PARTIES, "partially_released": _PARTIES},
    "refund_settled": {"refunding": _SYSTEM},
    "refund_failed": {"refunding": _SYSTEM},
}
# What a party may ever do, whatever the state: outside this a move is 403, not 409.
_ANYWHERE = {move: frozenset().union(*states.values()) for move, states in MOVES.items()}


@dataclass(frozen=True, slots=True)
class Escrow:
    id: str
    payer_id: str
    payee_id: str
    amount: int
    currency: str
    fee_bps: int
    status: str
    reference: str | None
    order_id: str
    account_id: int | None
    released_amount: int
    fee_amount: int
    refunded_amount: int
    refund_id: str | None
    status_before: str | None
    auto_release_at: datetime | None
    dispute_reason: str | None
    disputed_by: str | None
    created_at: datetime
    updated_at: datetime
    held_at: datetime | None

    @property
    def left(self) -> int:
        """What the escrow's account still holds."""
        return self.amount - self.released_amount - self.refunded_amount


_FIELDS = tuple(f.name for f in dataclasses.fields(Escrow))


def _escrow(row: Row[Any]) -> Escrow:
    return Escrow(**{name: row._mapping[name] for name in _FIELDS})


def check_move(escrow: Escrow, move: str, role: str) -> None:
    """Refuse a move the table does not allow: 403 for a role that may never make it, else 409."""
    if role not in _ANYWHERE[move]:
        raise Forbidden(f"the {role} of an escrow may not {move.replace('_', ' ')} it")
    if role not in MOVES[move].get(escrow.status, frozenset()):
        raise InvalidState(
            f"an escrow that is {escrow.status} cannot be {_PAST[move]} by the {role}",
            status=escrow.status,
            move=move,
        )


_PAST = {
    "fund": "funded",
    "release": "released",
    "auto_release": "released",
    "refund": "refunded",
    "dispute": "disputed",
    "refund_settled": "refunded",
    "refund_failed": "restored",
}


def role_of(escrow: Escrow, *, user_id: str | None, admin: bool) -> str:
    """Who the caller is to this escrow; someone else's escrow is not found."""
    if admin:
        return ADMIN
    if user_id == escrow.payer_id:
        return PAYER
    if user_id == escrow.payee_id:
        return PAYEE
    raise NotFound(f"no escrow {escrow.id}", escrow_id=escrow.id)


# ---------------------------------------------------------------------------------------------
# Reads


def get_escrow(session: Session, escrow_id: str, *, for_update: bool = False) -> Escrow:
    query = select(escrows).where(escrows.c.id == escrow_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no escrow {escrow_id}", escrow_id=escrow_id)
    return _escrow(row)


def find_by_order(session: Session, order_id: str, *, for_update: bool = False) -> Escrow:
    query = select(escrows).where(escrows.c.order_id == order_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise ledger.InvariantViolated(f"order {order_id} is for an escrow that does not exist")
    return _escrow(row)


def list_escrows(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    party_id: str | None = None,
    status: str | None = None,
) -> tuple[list[Escrow], bool]:
    """Newest first, keyset-paged on (created_at, id); `party_id` as payer or as payee."""
    assert 0 < limit <= LIST_LIMIT_MAX
    query = select(escrows)
    if party_id is not None:
        query = query.where(or_(escrows.c.payer_id == party_id, escrows.c.payee_id == party_id))
    rows, has_more = pages.newest_first(
        session,
        query,
        at=escrows.c.created_at,
        id_=escrows.c.id,
        limit=limit,
        before=before,
        equal=((escrows.c.status, status),),
    )
    return [_escrow(r) for r in rows], has_more


def due_for_release(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Held escrows whose `auto_release_at` has passed, soonest first."""
    rows = session.execute(
        select(escrows.c.id)
        .where(
            escrows.c.status.in_(("held", "partially_released")),
            escrows.c.auto_release_at <= now,
        )
        .order_by(escrows.c.auto_release_at, escrows.c.id)
        .limit(limit)
    )
    return [r.id for r in rows]


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
# Writing a move (inside a unit of work, the row locked)


def _move(session: Session, escrow: Escrow, *, now: datetime, **values: Any) -> Escrow:
    """Change the locked row; the WHERE repeats what the move was decided on (paired check)."""
    result = session.execute(
        update(escrows)
        .where(
            escrows.c.id == escrow.id,
            escrows.c.status == escrow.status,
            escrows.c.released_amount == escrow.released_amount,
            escrows.c.refunded_amount == escrow.refunded_amount,
        )
        .values(updated_at=now, **values)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise ledger.InvariantViolated(f"escrow {escrow.id} changed under its lock")
    moved = get_escrow(session, escrow.id)
    events.emit(session, escrow_events(moved), now=now)
    return moved


def escrow_events(escrow: Escrow) -> list[events.NewEvent]:
    data = {
        "escrow_id": escrow.id,
        "status": escrow.status,
        "amount": escrow.amount,
        "currency": escrow.currency,
        "released_amount": escrow.released_amount,
        "refunded_amount": escrow.refunded_amount,
        "left": escrow.left,
    }
    return [
        events.NewEvent(escrow.payer_id, "escrow.updated", data),
        events.NewEvent(escrow.payee_id, "escrow.updated", data),
    ]


def _locked_as_planned(session: Session, planned: Escrow, move: str, role: str) -> Escrow:
    """The row locked, the move still allowed, and nothing moved since it was planned."""
    escrow = get_escrow(session, planned.id, for_update=True)
    check_move(escrow, move, role)
    if (escrow.released_amount, escrow.refunded_amount) != (
        planned.released_amount,
        planned.refunded_amount,
    ):
        raise InvalidState(
            f"escrow {escrow.id} moved while this request was on its way: ask again",
            status=escrow.status,
        )
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
        locked = _locked_as_planned(session, escrow, move, role)
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
        moved = _move(
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
        return _locked_as_planned(session, escrow, "dispute", role)

    def after(session: Session, locked: Escrow, _: list[ledger.Transfer]) -> Escrow:
        return _move(
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
    return _move(
        session, escrow, now=now, status="refunding", status_before=escrow.status,
        refund_id=refund_id,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Settlement: what payments calls when the escrow's order is paid, or its money goes back


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
        # `_move` emits the escrow's events itself; the order's come back to the caller.
        _move(
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
                _move(session, escrow, now=now, status=escrow.status_before)
            return
        if outcome == "succeeded":
            refunded = escrow.refunded_amount + amount
            status = escrow.status
            if refunded + escrow.released_amount == escrow.amount:
                status = "refunded"  # ours, or the provider's own refund of all that was left
            elif ours:
                assert escrow.status_before is not None
                status = escrow.status_before
            _move(session, escrow, now=now, status=status, refunded_amount=refunded)
            return
        # reversed: the provider undid a refund after it succeeded, so the money is held again.
        refunded = escrow.refunded_amount - amount
        status = escrow.status
        if status == "refunded":
            status = "partially_released" if escrow.released_amount else "held"
        _move(session, escrow, now=now, status=status, refunded_amount=refunded)


SETTLEMENT = EscrowSettlement()


__all__ = [
    "ADMIN",
    "MOVES",
    "PAYEE",
    "PAYER",
    "SETTLEMENT",
    "SYSTEM",
    "Escrow",
    "EscrowSettlement",
    "check_move",
    "check_terms",
    "due_for_release",
    "escrow_id_for_order",
    "fee_of",
    "find_by_order",
    "get_escrow",
    "list_escrows",
    "mark_refunding",
    "plan_dispute",
    "plan_release",
    "record_escrow",
    "record_operator_move",
    "role_of",
]
