"""A user's money as they see it: balances, statement entries and totals, read from the ledger.

Balances come from the account rows (O(1)); entries are keyset pages over the ledger's
transfers; totals are sums per transfer type. A user's accounts are the ledger accounts they own
of kinds `wallet` and `earnings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.db import Database
from coffer.ledger import Account, Entry, Phase

USER_KINDS = ("wallet", "earnings")
GIFT_LEG_TYPES = ("gift", "commission", "fee")
PAGE_SIZE_MAX = 500

_STATUS_BY_PHASE = {
    Phase.POSTED: "posted",
    Phase.PENDING: "pending",
    Phase.POST_PENDING: "posted",
    Phase.VOID_PENDING: "voided",
    Phase.EXPIRE_PENDING: "expired",
}
_DESCRIPTIONS = {
    "purchase": "Top-up",
    "bonus": "Top-up bonus",
    "gift": "Gift",
    "call_charge": "Call",
    "commission": "Commission",
    "fee": "Platform fee",
    "refund": "Refund",
    "reversal": "Reversal",
    "escrow_hold": "Escrow",
    "escrow_release": "Escrow release",
    "payout": "Payout",
    "subscription": "Subscription",
    "adjustment": "Adjustment",
}


@dataclass(frozen=True, slots=True)
class Statement:
    """One line of a user's statement: a transfer from one of their accounts' side."""

    id: str
    transfer_id: int
    account_kind: str
    type: str
    status: str
    asset: str
    amount: int  # signed, minor units: what this account gained (+) or gave (-)
    balance_after: int
    counterparty_id: str
    description: str
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StatementPage:
    items: list[Statement]
    next_cursor: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Totals:
    purchased: int = 0
    gifts_sent: int = 0
    gifts_received: int = 0
    earned: int = 0
    withdrawn: int = 0


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: str
    accounts: list[Account]
    totals: Totals


@dataclass(slots=True)
class TypeSummary:
    asset: str
    type: str
    credits: int = 0
    credit_count: int = 0
    debits: int = 0
    debit_count: int = 0


@dataclass(slots=True)
class Summary:
    items: list[TypeSummary] = field(default_factory=list)

    def total(self, asset: str) -> tuple[int, int]:
        """(credits, debits) of one asset."""
        mine = [i for i in self.items if i.asset == asset]
        return sum(i.credits for i in mine), sum(i.debits for i in mine)


def user_accounts(session: Session, user_id: str, *, asset: str | None = None) -> list[Account]:
    accounts = ledger.accounts_of_owner(session, owner_type="user", owner_id=user_id)
    return [a for a in accounts if a.kind in USER_KINDS and (asset is None or a.asset == asset)]


def balance(session: Session, user_id: str) -> Balance:
    """The user's accounts and totals: one statement, whatever the history's length."""
    return _balance_of(
        user_id, ledger.owner_accounts_with_totals(session, owner_type="user", owner_id=user_id)
    )


async def balance_async(database: Database, user_id: str) -> Balance:
    """`balance`, awaited: the same statement, over the database's hottest-read path."""
    statement, params = ledger.owner_accounts_query(owner_type="user", owner_id=user_id)
    rows = await database.fetch_async(statement, params)
    return _balance_of(user_id, ledger.owner_accounts_from_rows(rows))


def _balance_of(user_id: str, owned: ledger.OwnerAccounts) -> Balance:
    accounts = [a for a in owned.accounts if a.kind in USER_KINDS]
    by_id = {a.id: a for a in accounts}
    purchased = gifts_sent = gifts_received = earned = withdrawn = 0
    for total in owned.totals:
        account = by_id.get(total.account_id)
        if account is None:
            continue
        if account.asset != "DIAMOND":
            continue
        if account.kind == "wallet":
            if total.type in ("purchase", "bonus"):
                purchased += total.credits
            elif total.type in GIFT_LEG_TYPES:
                # A gift debits the sender's wallet once per share: the host's (`gift`), the
                # agency's (`commission`) and the platform's (`fee`). Calls take their shares
                # from a clearing account, so from a wallet these three are gifts alone.
                gifts_sent += total.debits
        else:
            earned += total.credits
            if total.type == "gift":
                gifts_received += total.credits
        if total.type == "payout":
            withdrawn += total.debits
    return Balance(
        user_id=user_id,
        accounts=accounts,
        totals=Totals(purchased, gifts_sent, gifts_received, earned, withdrawn),
    )


def _describe(entry: Entry, counterparties: dict[int, Account]) -> tuple[str, str]:
    transfer = entry.transfer
    other = counterparties.get(entry.counterparty_account_id)
    if other is None:
        counterparty = "unknown"
    elif other.owner_type == "user":
        counterparty = other.owner_id
    else:
        counterparty = f"{other.owner_type}:{other.kind}"
    described = transfer.metadata.get("description")
    if isinstance(described, str) and described:
        return counterparty, described[:200]
    return counterparty, _DESCRIPTIONS.get(transfer.type, transfer.type.replace("_", " ").title())


def statement(
    session: Session,
    user_id: str,
    *,
    limit: int,
    cursor: tuple[int, int] | None = None,
    types: list[str] | None = None,
    asset: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> StatementPage:
    """The user's statement, newest first."""
    assert 0 < limit <= PAGE_SIZE_MAX
    accounts = {a.id: a for a in user_accounts(session, user_id, asset=asset)}
    if not accounts:
        return StatementPage([], None)
    page = ledger.entries(
        session,
        account_ids=list(accounts),
        limit=limit,
        before=cursor,
        types=types,
        created_from=created_from,
        created_to=created_to,
    )
    others = {e.counterparty_account_id for e in page.entries}
    counterparties = ledger.get_accounts(session, sorted(others))
    items = []
    for entry in page.entries:
        transfer = entry.transfer
        counterparty, description = _describe(entry, counterparties)
        account = accounts[entry.account_id]
        items.append(
            Statement(
                id=f"{transfer.id}-{account.kind}-{account.asset}".lower(),
                transfer_id=transfer.id,
                account_kind=account.kind,
                type=transfer.type,
                status=_STATUS_BY_PHASE[transfer.phase],
                asset=transfer.asset,
                amount=entry.amount,
                balance_after=entry.balance_after,
                counterparty_id=counterparty,
                description=description,
                metadata=transfer.metadata,
                created_at=transfer.created_at,
            )
        )
    return StatementPage(items, page.next_cursor)


def iter_statement(
    session_factory: Any,
    user_id: str,
    *,
    types: list[str] | None = None,
    asset: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    page_size: int = PAGE_SIZE_MAX,
) -> Iterator[Statement]:
    """Every statement line, a page per short read transaction (for streaming exports)."""
    cursor: tuple[int, int] | None = None
    while True:
        with session_factory() as session:
            page = statement(
                session,
                user_id,
                limit=page_size,
                cursor=cursor,
                types=types,
                asset=asset,
                created_from=created_from,
                created_to=created_to,
            )
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def summary(
    session: Session,
    user_id: str,
    *,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Summary:
    accounts = {a.id: a for a in user_accounts(session, user_id)}
    merged: dict[tuple[str, str], TypeSummary] = {}
    for total in ledger.totals_by_type(
        session, account_ids=list(accounts), created_from=created_from, created_to=created_to
    ):
        asset = accounts[total.account_id].asset
        item = merged.setdefault((asset, total.type), TypeSummary(asset, total.type))
        item.credits += total.credits
        item.credit_count += total.credit_count
        item.debits += total.debits
        item.debit_count += total.debit_count
    return Summary([merged[k] for k in sorted(merged)])
