"""Payout rows: the record, its reads, and what every change shares (the row lock, the guarded
update, the events it emits); see `service.py` for requests and `settlement.py` for the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.db import pages
from coffer.errors import NotFound
from coffer.payouts.tables import payouts

LEDGER_SOURCE = "payouts"  # the source of every payout transfer
LIST_LIMIT_MAX = 500
REASON_LENGTH_MAX = 255


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


def from_row(row: Row[Any]) -> Payout:
    """A `payouts` row as its record."""
    m = row._mapping
    return Payout(**{name: m[name] for name in Payout.__slots__})


def get_payout(session: Session, payout_id: str) -> Payout:
    row = session.execute(select(payouts).where(payouts.c.id == payout_id)).first()
    if row is None:
        raise NotFound(f"no payout {payout_id}", payout_id=payout_id)
    return from_row(row)


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
            return from_row(row), False
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
            payout = from_row(row)
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
    return [from_row(r) for r in rows], has_more


def guarded_update(session: Session, payout: Payout, **values: Any) -> None:
    """Write `values` to a payout locked as `payout` (its status and attempt unchanged since)."""
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


def locked_payout(session: Session, payout_id: str) -> Payout:
    """The payout, its row locked for the caller's transaction."""
    row = session.execute(
        select(payouts).where(payouts.c.id == payout_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no payout {payout_id}", payout_id=payout_id)
    return from_row(row)


def emit_changed(
    session: Session, payout: Payout, *, earnings_posted: int | None, now: datetime
) -> None:
    """`payout.updated`, and `wallet.updated` with the earnings' balance (`earnings_posted`
    when the change moved it, else the account's own)."""
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


__all__ = [
    "LEDGER_SOURCE",
    "LIST_LIMIT_MAX",
    "REASON_LENGTH_MAX",
    "Payout",
    "emit_changed",
    "find_for_event",
    "from_row",
    "get_payout",
    "get_user_payout",
    "guarded_update",
    "list_payouts",
    "locked_payout",
]
