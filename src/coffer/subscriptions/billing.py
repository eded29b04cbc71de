"""Billing a subscription's periods: the renewal job's units for wallet plans, and what the
providers' recurring-billing webhooks do (run in the inbox's transaction, under the writer's
lock). Every period is booked once: see `service.py`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.errors import InvalidState
from coffer.ledger import Group, TransferRequest, Work
from coffer.subscriptions.periods import to_unix
from coffer.subscriptions.records import (
    Subscription,
    book_period,
    emit,
    ended_values,
    get,
    guarded_update,
    period_booked,
)
from coffer.subscriptions.service import LEDGER_SOURCE, charge_request
from coffer.wallets import service as wallets

FAILURE_LENGTH_MAX = 255


# ---------------------------------------------------------------------------------------------
# Renewals (the job's units; see tasks.py)


def renewal_work(sub: Subscription, *, wallet_id: int, revenue_id: int, now: datetime) -> Work:
    """Charge the period that is due from the wallet, once: under the lock the row must still
    be due for that same period, else the unit answers None and moves nothing."""
    assert sub.pay_with == "wallet" and sub.anchor_at is not None
    index = sub.periods_paid
    start, end = sub.period_start(index), sub.period_start(index + 1)
    charge = charge_request(
        sub.id,
        wallet_id=wallet_id,
        revenue_id=revenue_id,
        amount=sub.price,
        start=start,
        plan_id=sub.plan_id,
    )

    def before(session: Session) -> Any:
        locked = get(session, sub.id, for_update=True)
        if not _still_due(locked, sub, now) or locked.cancel_at_period_end:
            return ledger.Done(None)
        return locked

    def after(session: Session, locked: Subscription, made: list[ledger.Transfer]) -> str:
        (transfer,) = made
        book_period(
            session,
            sub_id=sub.id,
            start=start,
            end=end,
            amount=sub.price,
            currency=sub.currency,
            transfer_id=transfer.id,
            via="wallet",
            payment_id=None,
            now=now,
        )
        guarded_update(
            session,
            locked,
            status="active",
            periods_paid=index + 1,
            paid_through=end,
            current_period_end=end,
            next_charge_at=end,
            failed_attempts=0,
            last_failure=None,
            claimed_until=None,
            updated_at=now,
        )
        emit(session, sub.id, now=now, wallet_posted=transfer.debit_balance_after)
        return "charged"

    return Work(
        Group((charge,), LEDGER_SOURCE), before=before, after=after, claims=frozenset({sub.id})
    )


def _still_due(locked: Subscription, seen: Subscription, now: datetime) -> bool:
    return (
        locked.live
        and locked.periods_paid == seen.periods_paid
        and locked.failed_attempts == seen.failed_attempts
        and locked.next_charge_at is not None
        and locked.next_charge_at <= now
    )


def renewal_failed_work(
    sub: Subscription, *, reason: str, retry_days: list[int], now: datetime
) -> Work:
    """A renewal the wallet could not pay: `past_due` with the next try on the next configured
    day after the due date, or `expired` after the last. Access stays to `paid_through`."""
    attempts = sub.failed_attempts + 1

    def before(session: Session) -> Any:
        locked = get(session, sub.id, for_update=True)
        if not _still_due(locked, sub, now):
            return ledger.Done(None)
        return locked

    def after(session: Session, locked: Subscription, _: list[ledger.Transfer]) -> str:
        values: dict[str, Any]
        if attempts > len(retry_days):
            values = ended_values("expired", now=now)
        else:
            due = locked.paid_through or now
            values = {
                "status": "past_due",
                "next_charge_at": due + timedelta(days=retry_days[attempts - 1]),
                # The unpaid period is the current one now.
                "current_period_end": locked.period_start(locked.periods_paid + 1),
                "claimed_until": None,
            }
        guarded_update(
            session,
            locked,
            failed_attempts=attempts,
            last_failure=reason[:FAILURE_LENGTH_MAX],
            updated_at=now,
            **values,
        )
        emit(session, sub.id, now=now)
        return str(values["status"])

    return Work(None, before=before, after=after, claims=frozenset({sub.id}))


def settle_due_work(sub: Subscription, *, retry_days: list[int], now: datetime) -> Work:
    """What the job does with a due row it does not charge: a cancelled subscription whose
    paid period ended becomes `canceled`; a provider subscription still `past_due` after the
    last retry day becomes `expired` (the provider never reported a charge)."""

    def before(session: Session) -> Any:
        locked = get(session, sub.id, for_update=True)
        if not _still_due(locked, sub, now):
            return ledger.Done(None)
        return locked

    def after(session: Session, locked: Subscription, _: list[ledger.Transfer]) -> str:
        deadline = (locked.paid_through or locked.updated_at) + timedelta(
            days=retry_days[-1] if retry_days else 0
        )
        if locked.cancel_at_period_end:
            status = "canceled"
        elif locked.status == "past_due" and now >= deadline:
            status = "expired"
        elif locked.status == "past_due":
            guarded_update(
                session, locked, next_charge_at=deadline, claimed_until=None, updated_at=now
            )
            return "skipped"
        else:
            # A provider subscription charged meanwhile: nothing to do until it is due again.
            guarded_update(session, locked, next_charge_at=None, claimed_until=None, updated_at=now)
            return "skipped"
        guarded_update(session, locked, updated_at=now, **ended_values(status, now=now))
        emit(session, sub.id, now=now)
        return status

    return Work(None, before=before, after=after, claims=frozenset({sub.id}))


# ---------------------------------------------------------------------------------------------
# Provider charges (from webhooks, in the writer's transaction: see webhooks/subscriptions.py)


def apply_charge(
    session: Session,
    sub: Subscription,
    *,
    start: datetime,
    end: datetime,
    amount: int,
    payment_id: str | None,
    now: datetime,
) -> bool:
    """Book one period the provider charged, once (True if this call booked it). Runs under
    the ledger's write lock (`Writer.call`): `sub` is re-read locked here."""
    locked = get(session, sub.id, for_update=True)
    assert locked.provider is not None and locked.pay_with == "provider"
    if end <= start:
        raise InvalidState("the charged period ends before it starts")
    if period_booked(session, locked.id, start):
        return False  # a second delivery, or another event naming the same period
    clearing = wallets.provider_account(session, locked.provider, asset=locked.currency)
    revenue = wallets.platform_account(session, kind="revenue", asset=locked.currency)
    meta = {
        "subscription_id": locked.id,
        "plan_id": locked.plan_id,
        "provider": locked.provider,
        "payment_id": payment_id,
        "period_start": start.isoformat(),
        "description": f"Subscription: {locked.plan_id}",
    }
    (transfer,) = ledger.execute(
        session,
        [
            TransferRequest(
                debit_account_id=clearing.id,
                credit_account_id=revenue.id,
                amount=amount,
                type="subscription",
                metadata=meta,
                idempotency_key=f"{locked.id}:period:{to_unix(start)}",
            )
        ],
        source=LEDGER_SOURCE,
        now=now,
    )
    book_period(
        session,
        sub_id=locked.id,
        start=start,
        end=end,
        amount=amount,
        currency=locked.currency,
        transfer_id=transfer.id,
        via="webhook",
        payment_id=payment_id,
        now=now,
    )
    paid_through = end if locked.paid_through is None else max(locked.paid_through, end)
    values: dict[str, Any] = {
        "periods_paid": locked.periods_paid + 1,
        "anchor_at": locked.anchor_at or start,
        "paid_through": paid_through,
        "current_period_end": max(locked.current_period_end or end, end),
        "updated_at": now,
    }
    if locked.live and (locked.status == "pending" or paid_through > now):
        # Paid ahead again (or paid at last): an older period arriving late changes no state.
        values.update(status="active", failed_attempts=0, last_failure=None)
        values["next_charge_at"] = paid_through if locked.cancel_at_period_end else None
    guarded_update(session, locked, **values)
    emit(session, locked.id, now=now)
    return True


def apply_payment_failed(
    session: Session,
    sub: Subscription,
    *,
    start: datetime | None,
    reason: str,
    now: datetime,
) -> bool:
    """The provider could not charge a period (it retries by itself): `past_due`, unless that
    period is paid already (a late event) or nothing was ever paid (still `pending`)."""
    locked = get(session, sub.id, for_update=True)
    if locked.status != "active":
        return False
    if start is not None and (
        period_booked(session, locked.id, start)
        or (locked.paid_through is not None and start < locked.paid_through)
    ):
        return False
    guarded_update(
        session,
        locked,
        status="past_due",
        failed_attempts=locked.failed_attempts + 1,
        last_failure=reason[:FAILURE_LENGTH_MAX],
        # The job looks at it from the due date: if the provider reports no charge by the last
        # configured retry day, it expires (settle_due_work).
        next_charge_at=locked.paid_through or now,
        updated_at=now,
    )
    emit(session, locked.id, now=now)
    return True


def apply_ended(session: Session, sub: Subscription, *, status: str, now: datetime) -> bool:
    """The provider ended the subscription (cancelled, or halted after its retries)."""
    locked = get(session, sub.id, for_update=True)
    if not locked.live:
        return False
    guarded_update(session, locked, updated_at=now, **ended_values(status, now=now))
    emit(session, locked.id, now=now)
    return True
