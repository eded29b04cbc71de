"""The operators' transactions search: every transfer in the ledger, seen with its accounts'
owners, filtered by user, type, status, asset and time, with a summary by type and status.

The ledger answers in account ids; this module turns a user into their accounts and accounts
back into owners. Pages are keyset (never OFFSET); the summary reads running totals
(`coffer.ledger.search`), so neither grows with the books.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.ledger import Account, Transfer
from coffer.ledger import search as ledger_search

STATUSES = tuple(ledger_search.STATUS_PHASES)
PAGE_SIZE_MAX = ledger_search.SEARCH_LIMIT_MAX


@dataclass(frozen=True, slots=True)
class TransactionFilters:
    user_id: str | None = None
    types: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    asset: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def for_ledger(self, session: Session) -> ledger_search.Filters:
        account_ids = None
        if self.user_id is not None:
            account_ids = [
                a.id
                for a in ledger.accounts_of_owner(session, owner_type="user", owner_id=self.user_id)
            ]
        return ledger_search.Filters(
            account_ids=account_ids,
            types=self.types,
            statuses=self.statuses,
            asset=self.asset,
            created_from=self.created_from,
            created_to=self.created_to,
        )


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a transaction: the account and who owns it."""

    account_id: int
    owner_type: str
    owner_id: str
    kind: str
    balance_after: int


@dataclass(frozen=True, slots=True)
class Transaction:
    id: int
    group_id: int
    type: str
    status: str
    phase: str
    asset: str
    amount: int
    debit: Side
    credit: Side
    pending_id: int | None
    reversal_of: int | None
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TransactionPage:
    items: list[Transaction]
    next_before_id: int | None


def search(
    session: Session, filters: TransactionFilters, *, limit: int, before_id: int | None = None
) -> TransactionPage:
    """Transactions matching the filters, newest first."""
    page = ledger_search.search(
        session, filters.for_ledger(session), limit=limit, before_id=before_id
    )
    ids = {t.debit_account_id for t in page.transfers} | {
        t.credit_account_id for t in page.transfers
    }
    accounts = ledger.get_accounts(session, sorted(ids))
    return TransactionPage([_transaction(t, accounts) for t in page.transfers], page.next_before_id)


def summary(session: Session, filters: TransactionFilters) -> list[ledger_search.SummaryLine]:
    """Count and amount per (asset, type, status) of every transaction the filters match."""
    return ledger_search.summary(session, filters.for_ledger(session))


def iter_transactions(
    read: Callable[[], AbstractContextManager[Session]],
    filters: TransactionFilters,
    *,
    page_size: int = PAGE_SIZE_MAX,
) -> Iterator[Transaction]:
    """Every match, newest first, one short read transaction per page (for streamed exports:
    memory stays one page, however many rows there are)."""
    before_id: int | None = None
    while True:
        with read() as session:
            page = search(session, filters, limit=page_size, before_id=before_id)
        yield from page.items
        if page.next_before_id is None:
            return
        before_id = page.next_before_id


def _transaction(t: Transfer, accounts: dict[int, Account]) -> Transaction:
    return Transaction(
        id=t.id,
        group_id=t.group_id,
        type=t.type,
        status=ledger_search.STATUS_OF_PHASE[t.phase.value],
        phase=t.phase.value,
        asset=t.asset,
        amount=t.amount,
        debit=_side(accounts, t.debit_account_id, t.debit_balance_after),
        credit=_side(accounts, t.credit_account_id, t.credit_balance_after),
        pending_id=t.pending_id,
        reversal_of=t.reversal_of,
        metadata=t.metadata,
        created_at=t.created_at,
    )


def _side(accounts: dict[int, Account], account_id: int, balance_after: int) -> Side:
    account = accounts[account_id]
    return Side(account_id, account.owner_type, account.owner_id, account.kind, balance_after)
