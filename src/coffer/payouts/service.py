"""Payouts of a user's earnings: requested and retried, each as a unit of work that holds them.

- **Request** (`plan_request_payout`): the gates (`_check_may_pay_out`), then a unit of work
  that holds the amount on the user's `earnings` account (earnings -> the platform's `payouts`
  account, pending, no timeout) and records the payout `pending`, with the payout currency's
  amount converted at the configured rate (rounded down) and the rate itself.
- The provider is asked after that unit committed (`flows.send_payout`); what it answers, its
  webhooks and the reconciler all book through `settlement.settle`, which moves a payout only
  forward and posts, voids or returns the hold.
- **Retry** (`plan_retry`, an operator's): a failed payout gets a new hold and a new attempt,
  with a provider idempotency key of its own (`Payout.idempotency_key`).

The record and its reads are `records.py`'s. Every change emits `payout.updated`, and
`wallet.updated` when the earnings moved (`records.emit_changed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session

from coffer import ledger, oplog
from coffer.config import DIAMOND, ShopConfig
from coffer.db import Database
from coffer.errors import (
    InsufficientFunds,
    InvalidState,
    KycRequired,
    PayeeRequired,
    ValidationFailed,
)
from coffer.kyc import service as kyc
from coffer.ledger import Group, TransferRequest, Work
from coffer.payouts import payees
from coffer.payouts.payees import Payee
from coffer.payouts.records import (
    LEDGER_SOURCE,
    REASON_LENGTH_MAX,
    Payout,
    emit_changed,
    get_payout,
    guarded_update,
    locked_payout,
)
from coffer.payouts.tables import payouts
from coffer.wallets import service as wallets

# The reconciler first asks about a payout this long after it was sent (its webhook is due).
RECONCILE_AFTER_S = 10 * 60


@dataclass(frozen=True, slots=True)
class Quote:
    asset: str
    amount: int
    payout_currency: str
    payout_amount: int
    rate: int  # `asset` minor units per major unit of `payout_currency`


def quote(shop: ShopConfig, *, asset: str, amount: int) -> Quote:
    """What `amount` of `asset` pays out, in the payout currency, rounded down."""
    ledger.check_amount(amount)
    currency = shop.payouts.currency
    if asset not in (DIAMOND, currency):
        raise ValidationFailed(
            f"earnings are paid out from {DIAMOND} or {currency}, not {asset}",
            fields=[{"field": "body.asset", "message": f"{DIAMOND} or {currency}", "type": asset}],
        )
    minor_per_unit = 10 ** shop.assets[currency].scale
    rate = shop.payouts.diamonds_per_unit if asset == DIAMOND else minor_per_unit
    payout_amount = amount * minor_per_unit // rate
    if payout_amount <= 0:
        raise ValidationFailed(
            f"{amount} {asset} is less than one minor unit of {currency}",
            fields=[{"field": "body.amount", "message": "too small to pay out", "type": "minimum"}],
        )
    return Quote(asset, amount, currency, payout_amount, rate)


def _check_may_pay_out(session: Session, shop: ShopConfig, *, user_id: str, quoted: Quote) -> Payee:
    """Every gate a payout passes before anything is held, in one place; returns the payee.

    In API.md's order: approved KYC (403 `kyc_required`), a wallet that is not frozen (403
    `account_frozen`), an active payee (403 `payee_required`), and at least the configured
    minimum for the asset (422); enough earnings (402) is the ledger's own check.
    """
    status = kyc.kyc_status(session, user_id)
    if status != "approved":
        raise KycRequired(
            f"a payout needs approved KYC (yours is {status.replace('_', ' ')}): POST /kyc",
            kyc_status=status,
        )
    wallets.check_may_spend(session, user_id)
    payee = payees.find_payee(session, user_id)
    if payee is None or payee.status != "active":
        raise PayeeRequired(
            "a payout needs an active payee: PUT /payees/me"
            + ("" if payee is None else f" (yours is {payee.status})"),
            payee_status=None if payee is None else payee.status,
        )
    minimum = shop.payouts.minimum.get(quoted.asset, 1)
    if quoted.amount < minimum:
        raise ValidationFailed(
            f"the smallest payout is {minimum} {quoted.asset}",
            minimum=minimum,
            fields=[{"field": "body.amount", "message": f"at least {minimum}", "type": "minimum"}],
        )
    return payee


@dataclass(frozen=True, slots=True)
class _Accounts:
    earnings: ledger.Account
    platform: int


def _accounts(database: Database, *, user_id: str, asset: str) -> _Accounts:
    """The user's earnings and the platform's payouts account, opened on first use."""

    def find(session: Session) -> _Accounts | None:
        earnings = ledger.find_account(
            session, asset=asset, owner_type="user", owner_id=user_id, kind="earnings"
        )
        platform = ledger.find_account(
            session,
            asset=asset,
            owner_type="platform",
            owner_id=wallets.PLATFORM_OWNER_ID,
            kind="payouts",
        )
        if earnings is None or platform is None:
            return None
        return _Accounts(earnings, platform.id)

    with database.read() as session:
        known = find(session)
    if known is not None:
        return known
    with database.unit_of_work() as session:
        wallets.earnings_account(session, user_id, asset)
        wallets.platform_account(session, kind="payouts", asset=asset)
    with database.read() as session:
        made = find(session)
    assert made is not None
    return made


def _hold(payout_id: str, attempt: int, accounts: _Accounts, amount: int) -> TransferRequest:
    return TransferRequest(
        debit_account_id=accounts.earnings.id,
        credit_account_id=accounts.platform,
        amount=amount,
        type="payout",
        metadata={"payout_id": payout_id, "attempt": attempt, "description": "Payout: held"},
        idempotency_key=f"{payout_id}:hold:{attempt}",
        pending=True,  # no timeout: it lasts until the provider settles the payout
    )


def _check_funds(accounts: _Accounts, amount: int) -> None:
    available = accounts.earnings.available
    if available < amount:
        raise InsufficientFunds(
            f"earnings hold {available} {accounts.earnings.asset} available, not {amount}",
            available=available,
            amount=amount,
        )


def plan_request_payout(
    database: Database,
    shop: ShopConfig,
    *,
    payout_id: str,
    user_id: str,
    amount: int,
    asset: str | None,
) -> Work:
    """Check the gates and the funds; the unit that holds the amount and records the payout."""
    quoted = quote(shop, asset=asset or DIAMOND, amount=amount)
    with database.read() as session:
        payee = _check_may_pay_out(session, shop, user_id=user_id, quoted=quoted)
    accounts = _accounts(database, user_id=user_id, asset=quoted.asset)
    _check_funds(accounts, amount)
    hold = _hold(payout_id, 0, accounts, amount)

    def after(session: Session, _: object, made: list[ledger.Transfer]) -> Payout:
        (held,) = made
        now = held.created_at
        session.execute(
            insert(payouts).values(
                id=payout_id,
                user_id=user_id,
                provider=payee.provider,
                provider_account_id=payee.provider_account_id,
                destination_type=payee.destination_type,
                status="pending",
                asset=quoted.asset,
                amount=amount,
                payout_currency=quoted.payout_currency,
                payout_amount=quoted.payout_amount,
                rate=quoted.rate,
                attempt=0,
                hold_id=held.id,
                reconcile_attempts=0,
                next_check_at=now + timedelta(seconds=RECONCILE_AFTER_S),
                created_at=now,
                updated_at=now,
            )
        )
        payout = get_payout(session, payout_id)
        emit_changed(session, payout, earnings_posted=None, now=now)
        return payout

    return Work(Group((hold,), LEDGER_SOURCE), after=after, claims=frozenset({payout_id}))


def plan_retry(
    database: Database, shop: ShopConfig, *, payout_id: str, reason: str | None, actor: str
) -> Work:
    """A failed payout again: a new hold and a new attempt at the provider (409 otherwise); the
    operator's decision goes into the audit trail in the same commit."""
    with database.read() as session:
        payout = get_payout(session, payout_id)
        if payout.status != "failed":
            raise InvalidState(f"only a failed payout is retried; this one is {payout.status}",
                               status=payout.status)  # fmt: skip
        quoted = Quote(
            payout.asset, payout.amount, payout.payout_currency, payout.payout_amount, payout.rate
        )
        payee = _check_may_pay_out(session, shop, user_id=payout.user_id, quoted=quoted)
    accounts = _accounts(database, user_id=payout.user_id, asset=payout.asset)
    _check_funds(accounts, payout.amount)
    attempt = payout.attempt + 1
    hold = _hold(payout.id, attempt, accounts, payout.amount)

    def before(session: Session) -> Payout:
        locked = locked_payout(session, payout.id)
        if locked.status != "failed" or locked.attempt != payout.attempt:
            raise InvalidState(f"the payout is {locked.status}", status=locked.status)
        return locked

    def after(session: Session, locked: Payout, made: list[ledger.Transfer]) -> Payout:
        (held,) = made
        now = held.created_at
        guarded_update(
            session,
            locked,
            status="pending",
            attempt=attempt,
            hold_id=held.id,
            provider=payee.provider,
            provider_account_id=payee.provider_account_id,
            destination_type=payee.destination_type,
            provider_payout_id=None,
            post_transfer_id=None,
            failure_reason=None,
            retry_reason=None if reason is None else reason[:REASON_LENGTH_MAX],
            reconcile_attempts=0,
            next_check_at=now + timedelta(seconds=RECONCILE_AFTER_S),
            settled_at=None,
            updated_at=now,
        )
        retried = get_payout(session, payout.id)
        emit_changed(session, retried, earnings_posted=None, now=now)
        oplog.record(
            session, actor=actor, action="payout.retry", subject_type="payout",
            subject_id=payout.id, reason=reason,
            details={"user_id": payout.user_id, "amount": payout.amount, "attempt": attempt},
            now=now,
        )  # fmt: skip
        return retried

    return Work(
        Group((hold,), LEDGER_SOURCE), before=before, after=after, claims=frozenset({payout.id})
    )
