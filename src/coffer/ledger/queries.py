"""Reads over history: keyset pages per account, and balances as of a past instant."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.errors import AccountNotFound, InvalidTransfer
from coffer.ledger.types import Transfer

HISTORY_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class HistoryPage:
    transfers: list[Transfer]
    # Pass as `before_id` for the next (older) page; None when this is the last page.
    next_before_id: int | None


def history(
    session: Session,
    *,
    account_id: int,
    limit: int = 50,
    before_id: int | None = None,
    types: Collection[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> HistoryPage:
    """An account's transfers, newest first, `limit` at a time (keyset: never OFFSET).

    `created_from` is inclusive and `created_to` exclusive.
    """
    if type(limit) is not int or not 0 < limit <= HISTORY_LIMIT_MAX:
        raise InvalidTransfer(f"limit must be 1 to {HISTORY_LIMIT_MAX}", field="limit")
    rows = repo.account_history(
        session.connection(),
        account_id=account_id,
        limit=limit + 1,
        before_id=before_id,
        types=types,
        created_from=created_from,
        created_to=created_to,
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    return HistoryPage(rows, rows[-1].id if has_more else None)


def balance_at(session: Session, *, account_id: int, at: datetime) -> int:
    """The account's posted balance (credit-normal) just after the last transfer made at or
    before `at`; 0 before its first. One index probe per side, whatever the history's length."""
    conn = session.connection()
    if not repo.get_accounts(conn, [account_id]):
        raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
    last = repo.last_transfer_touching(conn, account_id=account_id, at_or_before=at)
    if last is None:
        return 0
    if last.debit_account_id == account_id:
        return last.debit_balance_after
    return last.credit_balance_after
