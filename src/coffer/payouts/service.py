"""Payouts of a user's earnings: held while the provider works, posted, voided or returned.

- **Request** (`plan_request_payout`): the gates (`_check_may_pay_out`), then a unit of work
  that holds the amount on the user's `earnings` account (earnings -> the platform's `payouts`
  account, pending, no timeout) and records the payout `pending`, with the payout currency's
  amount converted at the configured rate (rounded down) and the rate itself.
- The provider is asked after that unit committed (`flows.send_payout`); what it answers, its
  webhooks and the reconciler all book through `settle`, which moves a payout only forward:
  `pending -> processing -> paid | failed | cancelled`, and `paid -> reversed`. Paid posts the
  hold; failed or cancelled voids it (the earnings are available again); reversed after paid
  returns the amount with a reversal transfer.
- **Retry** (`plan_retry`, an operator's): a failed payout gets a new hold and a new attempt,
  with a provider idempotency key of its own (`idempotency_key`).

Every change emits `payout.updated`, and `wallet.updated` when the earnings moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger, oplog
from coffer.config import DIAMOND, ShopConfig
from coffer.db import Database, pages
from coffer.errors import (
    InsufficientFunds,
    InvalidState,
    KycRequired,
    NotFound,
    PayeeRequired,
    ValidationFailed,
)
from coffer.kyc import service as kyc
from coffer.ledger import Group, PostHold, Reversal, TransferRequest, VoidHold, Work
from coffer.payouts import payees
from coffer.payouts.payees import Payee
from coffer.payouts.tables import payouts
from coffer.wallets import service as wallets

LEDGER_SOURCE = "payouts"
LIST_LIMIT_MAX = 500
REASON_LENGTH_MAX = 255
# The reconciler first asks about a payout this long after it was sent (its webhook is due).
RECONCILE_AFTER_S = 10 * 60
FINAL = frozenset({"failed", "cancelled", "reversed"})
_RANK = {"pending": 0, "processing": 1, "paid": 2, "failed": 2, "cancelled": 2, "reversed": 3}


@dataclass(frozen=True, slots=True)
class Payout:
    id: str
    user_id: str
    provider: str
    provider_account_id: str
    destination_type: str
    status: str
    asset: str
    amount: int
    payout_currency: str
    payout_amount: int
    rate: int
    attempt: int
    hold_id: int
    post_transfer_id: int | None
    reversal_transfer_id: int | None
    provider_payout_id: str | None
    failure_reason: str | None
    retry_reason: str | None
    reconcile_attempts: int
    next_check_at: datetime
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None

    @property
    def idempotency_key(self) -> str:
        """The provider's idempotency key for this attempt: the payout's own id, then
        `{id}_{attempt}` for each retry (a retry must not be answered the failed attempt)."""
        return self.id if self.attempt == 0 else f"{self.id}_{self.attempt}"


def _payout(row: Row[Any]) -> Payout:
    m = row._mapping
    return Payout(**{name: m[name] for name in Payout.__slots__})


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
        _emit(session, payout, earnings_posted=None, now=now)
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
        locked = _locked(session, payout.id)
        if locked.status != "failed" or locked.attempt != payout.attempt:
            raise InvalidState(f"the payout is {locked.status}", status=locked.status)
        return locked

    def after(session: Session, locked: Payout, made: list[ledger.Transfer]) -> Payout:
        (held,) = made
        now = held.created_at
        _guarded_update(
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
        _emit(session, retried, earnings_posted=None, now=now)
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


# ---------------------------------------------------------------------------------------------
# Settling: what the provider said, from its answer, a webhook or the reconciler


def moves_forward(current: str, new: str) -> bool:
    """Whether `current -> new` is a step forward (anything else is ignored, never applied)."""
    if current in FINAL or current == new:
        return False
    if current == "paid":
        return new == "reversed"
    return _RANK[new] > _RANK[current]


def settle(
    session: Session,
    *,
    payout_id: str,
    status: str,
    now: datetime,
    attempt: int | None = None,
    provider_payout_id: str | None = None,
    reason: str | None = None,
) -> Payout:
    """Book what the provider says of a payout, in the caller's transaction (which holds the
    ledger's write lock: the writer's, or a webhook's). Only forward moves are applied, so a
    replayed or late report changes nothing; `attempt`, when given, must be the payout's own
    (an answer about an earlier attempt is not this one's)."""
    payout = _locked(session, payout_id)
    if attempt is not None and attempt != payout.attempt:
        return payout
    values: dict[str, Any] = {}
    if provider_payout_id is not None and payout.provider_payout_id is None:
        values["provider_payout_id"] = provider_payout_id[:64]
    if not moves_forward(payout.status, status):
        if values:
            _guarded_update(session, payout, updated_at=now, **values)
            return get_payout(session, payout_id)
        return payout
    posted: int | None = None
    meta = {"payout_id": payout.id, "attempt": payout.attempt}
    key = f"{payout.id}:{payout.attempt}"
    if status == "paid" or (status == "reversed" and payout.status != "paid"):
        (post,) = ledger.execute(
            session,
            [PostHold(payout.hold_id, metadata={**meta, "description": "Payout: paid"},
                      idempotency_key=f"{key}:post")],
            source=LEDGER_SOURCE,
            now=now,
        )  # fmt: skip
        values["post_transfer_id"] = post.id
        posted = post.debit_balance_after
    if status == "reversed":
        post_id = values.get("post_transfer_id", payout.post_transfer_id)
        assert post_id is not None
        (returned,) = ledger.execute(
            session,
            [Reversal(post_id, type="payout_reversal",
                      metadata={**meta, "description": "Payout: returned"},
                      idempotency_key=f"{key}:reverse")],
            source=LEDGER_SOURCE,
            now=now,
        )  # fmt: skip
        values["reversal_transfer_id"] = returned.id
        posted = returned.credit_balance_after
    if status in ("failed", "cancelled"):
        (voided,) = ledger.execute(
            session,
            [VoidHold(payout.hold_id, metadata=meta, idempotency_key=f"{key}:void")],
            source=LEDGER_SOURCE,
            now=now,
        )
        posted = voided.debit_balance_after
    if status in ("failed", "cancelled", "reversed"):
        values["failure_reason"] = (reason or f"the provider reports it {status}")[
            :REASON_LENGTH_MAX
        ]
    if status in ("paid", "failed", "cancelled", "reversed"):
        values["settled_at"] = now
    _guarded_update(session, payout, status=status, updated_at=now, **values)
    settled = get_payout(session, payout_id)
    _emit(session, settled, earnings_posted=posted, now=now)
    return settled


def _guarded_update(session: Session, payout: Payout, **values: Any) -> None:
    result = session.execute(
        update(payouts)
        .where(
            payouts.c.id == payout.id,
            payouts.c.status == payout.status,
            payouts.c.attempt == payout.attempt,
        )
        .values(**values)
    )
    count: int = result.rowcount  # type: ignore[attr-defined]
    if count != 1:  # the row is locked: nobody else can have moved it
        raise ledger.InvariantViolated(f"payout {payout.id} changed under its lock")


def _locked(session: Session, payout_id: str) -> Payout:
    row = session.execute(
        select(payouts).where(payouts.c.id == payout_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no payout {payout_id}", payout_id=payout_id)
    return _payout(row)


def _emit(session: Session, payout: Payout, *, earnings_posted: int | None, now: datetime) -> None:
    data = {
        "payout_id": payout.id,
        "status": payout.status,
        "amount": payout.amount,
        "asset": payout.asset,
        "payout_amount": payout.payout_amount,
        "payout_currency": payout.payout_currency,
        "failure_reason": payout.failure_reason,
    }
    made = [events.NewEvent(payout.user_id, "payout.updated", data)]
    account = ledger.find_account(
        session, asset=payout.asset, owner_type="user", owner_id=payout.user_id, kind="earnings"
    )
    if account is not None:
        made.append(
            events.NewEvent(
                payout.user_id,
                "wallet.updated",
                {
                    "kind": "earnings",
                    "asset": payout.asset,
                    "posted": account.balance if earnings_posted is None else earnings_posted,
                    "available": account.available,
                    "cause": payout.id,
                },
            )
        )
    events.emit(session, made, now=now)


# ---------------------------------------------------------------------------------------------
# Reads


def get_payout(session: Session, payout_id: str) -> Payout:
    row = session.execute(select(payouts).where(payouts.c.id == payout_id)).first()
    if row is None:
        raise NotFound(f"no payout {payout_id}", payout_id=payout_id)
    return _payout(row)


def get_user_payout(session: Session, *, payout_id: str, user_id: str) -> Payout:
    """The user's own payout; someone else's is not found (its existence is not revealed)."""
    payout = get_payout(session, payout_id)
    if payout.user_id != user_id:
        raise NotFound(f"no payout {payout_id}", payout_id=payout_id)
    return payout


def find_for_event(
    session: Session, *, provider: str, provider_payout_id: str | None, reference: str | None
) -> tuple[Payout | None, bool]:
    """The payout a provider's event is about: by the provider's id, else by Coffer's id it
    echoes while the provider's id is not yet booked. Returns (payout, whether the event is
    about another attempt of it, to be ignored)."""
    if provider_payout_id:
        row = session.execute(
            select(payouts).where(
                payouts.c.provider == provider, payouts.c.provider_payout_id == provider_payout_id
            )
        ).first()
        if row is not None:
            return _payout(row), False
    if reference:
        # `pout_...` for the first attempt, `pout_..._{n}` for a retry (`idempotency_key`).
        payout_id, _, suffix = reference.partition("_")[2].partition("_")
        attempt = int(suffix) if suffix.isdigit() else 0
        row = session.execute(
            select(payouts).where(
                payouts.c.id == f"pout_{payout_id}", payouts.c.provider == provider
            )
        ).first()
        if row is not None:
            payout = _payout(row)
            if payout.attempt == attempt and payout.provider_payout_id is None:
                return payout, False
            return None, True  # another attempt's provider payout
    return None, False


def list_payouts(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    user_id: str | None = None,
    status: str | None = None,
) -> tuple[list[Payout], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (payouts, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(payouts),
        at=payouts.c.created_at,
        id_=payouts.c.id,
        limit=limit,
        before=before,
        equal=((payouts.c.user_id, user_id), (payouts.c.status, status)),
    )
    return [_payout(r) for r in rows], has_more
