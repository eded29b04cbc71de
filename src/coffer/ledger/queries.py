"""Reads over history: keyset pages per account, and balances as of a past instant."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger import tables
from coffer.ledger.errors import AccountNotFound, InvalidTransfer
from coffer.ledger.types import Account, Transfer

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


# ---------------------------------------------------------------------------------------------
# Several accounts at once (a user's wallet and earnings): the SQL for these read models lives
# here, beside their only callers, rather than among the posting statements in repository/.


@dataclass(frozen=True, slots=True)
class Entry:
    """A transfer seen from one of the accounts it touches."""

    account_id: int
    transfer: Transfer

    @property
    def amount(self) -> int:
        """Signed from this account's side: credits add, debits take away."""
        if self.transfer.credit_account_id == self.account_id:
            return self.transfer.amount
        return -self.transfer.amount

    @property
    def balance_after(self) -> int:
        t = self.transfer
        return (
            t.credit_balance_after
            if t.credit_account_id == self.account_id
            else (t.debit_balance_after)
        )

    @property
    def counterparty_account_id(self) -> int:
        t = self.transfer
        return (
            t.debit_account_id if t.credit_account_id == self.account_id else (t.credit_account_id)
        )


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[Entry]
    next_cursor: tuple[int, int] | None  # (transfer id, account id) of the last entry


def entries(
    session: Session,
    *,
    account_ids: Collection[int],
    limit: int = 50,
    before: tuple[int, int] | None = None,
    types: Collection[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> EntryPage:
    """Transfers on any of these accounts, newest first, keyset-paged on (transfer, account)."""
    if type(limit) is not int or not 0 < limit <= HISTORY_LIMIT_MAX:
        raise InvalidTransfer(f"limit must be 1 to {HISTORY_LIMIT_MAX}", field="limit")
    ids = sorted(set(account_ids))
    if not ids:
        return EntryPage([], None)
    statement = _entries_statement(
        len(ids), before is not None, bool(types), created_from is not None, created_to is not None
    )
    params: dict[str, object] = {f"account_{i}": account_id for i, account_id in enumerate(ids)}
    params["limit"] = limit + 1
    if before is not None:
        params["before_id"], params["before_account"] = before
    if types:
        params["types"] = sorted(types)
    if created_from is not None:
        params["created_from"] = created_from
    if created_to is not None:
        params["created_to"] = created_to
    rows = session.execute(statement, params).all()
    found = [Entry(row.entry_account_id, repo.transfer_from_row(row)) for row in rows[:limit]]
    has_more = len(rows) > limit
    last = found[-1] if found else None
    return EntryPage(found, (last.transfer.id, last.account_id) if has_more and last else None)


@functools.lru_cache(maxsize=128)
def _entries_statement(
    accounts: int, paged: bool, typed: bool, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    """The entries query for this many accounts and these filters, built once: its values are
    bound parameters, so a page costs no statement building (and leaves no garbage behind)."""
    t = tables.transfers
    limit = bindparam("limit", type_=BigInteger)
    parts = []
    for i in range(accounts):
        account = bindparam(f"account_{i}", type_=BigInteger)
        for column in (t.c.debit_account_id, t.c.credit_account_id):
            query = select(t, account.label("entry_account_id")).where(column == account)
            if paged:
                before_id = bindparam("before_id", type_=BigInteger)
                query = query.where(
                    or_(
                        t.c.id < before_id,
                        and_(
                            t.c.id == before_id,
                            account < bindparam("before_account", type_=BigInteger),
                        ),
                    )
                )
            if typed:
                query = query.where(t.c.type.in_(bindparam("types", expanding=True)))
            if bounded_from:
                query = query.where(
                    t.c.created_at >= bindparam("created_from", type_=t.c.created_at.type)
                )
            if bounded_to:
                query = query.where(
                    t.c.created_at < bindparam("created_to", type_=t.c.created_at.type)
                )
            parts.append(query.order_by(t.c.id.desc()).limit(limit).subquery().select())
    merged = union_all(*parts).subquery()
    return (
        select(merged).order_by(merged.c.id.desc(), merged.c.entry_account_id.desc()).limit(limit)
    )


@dataclass(frozen=True, slots=True)
class TypeTotal:
    account_id: int
    type: str
    credits: int  # sum of posted amounts into the account
    credit_count: int
    debits: int  # sum of posted amounts out of the account
    debit_count: int


def totals_by_type(
    session: Session,
    *,
    account_ids: Collection[int],
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> list[TypeTotal]:
    """Posted money in and out of each account, per transfer type (holds count once posted).

    Without a time range this reads the running totals (a few rows per account); with one it
    sums the transfers in the range."""
    ids = sorted(set(account_ids))
    if not ids:
        return []
    if created_from is None and created_to is None:
        return _running_totals_by_type(session, ids)
    t = tables.transfers
    sums: dict[tuple[int, str], list[int]] = {}
    for side, column in ((0, t.c.credit_account_id), (1, t.c.debit_account_id)):
        query = (
            select(column.label("account_id"), t.c.type, func.count(), func.sum(t.c.amount))
            .where(column.in_(ids), t.c.phase.in_(("posted", "post_pending")))
            .group_by(column, t.c.type)
        )
        if created_from is not None:
            query = query.where(t.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(t.c.created_at < created_to)
        for account_id, type_, count, total in session.execute(query):
            bucket = sums.setdefault((account_id, type_), [0, 0, 0, 0])
            bucket[side * 2] += int(total or 0)
            bucket[side * 2 + 1] += int(count)
    return [
        TypeTotal(account_id, type_, v[0], v[1], v[2], v[3])
        for (account_id, type_), v in sorted(sums.items())
    ]


@dataclass(frozen=True, slots=True)
class OwnerAccounts:
    accounts: list[Account]  # by id
    totals: list[TypeTotal]  # posted, per account and type, as `totals_by_type` gives them


def owner_accounts_with_totals(
    session: Session, *, owner_type: str, owner_id: str
) -> OwnerAccounts:
    """An owner's accounts and their running totals by type, in one statement (one round trip,
    one snapshot): what a balance answer needs, however long the history."""
    statement, params = owner_accounts_query(owner_type=owner_type, owner_id=owner_id)
    return owner_accounts_from_rows(session.connection().execute(statement, params).mappings())


def owner_accounts_query(*, owner_type: str, owner_id: str) -> tuple[Select[Any], dict[str, str]]:
    """The statement `owner_accounts_with_totals` runs (built once) and its parameters, for a
    caller that runs it on a connection of its own; `owner_accounts_from_rows` reads the rows."""
    return _owner_accounts_statement(), {"owner_type": owner_type, "owner_id": owner_id}


def owner_accounts_from_rows(rows: Iterable[Mapping[Any, Any]]) -> OwnerAccounts:
    """`owner_accounts_query`'s rows (by column name) as accounts and totals."""
    found: dict[int, Account] = {}
    sums: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        account_id = row["id"]
        if account_id not in found:
            found[account_id] = repo.account_from_mapping(row)
        total_type = row["total_type"]
        if total_type is not None:
            bucket = sums.setdefault((account_id, total_type), [0, 0, 0, 0])
            bucket[0] += row["credit_amount"]
            bucket[1] += row["credit_count"]
            bucket[2] += row["debit_amount"]
            bucket[3] += row["debit_count"]
    return OwnerAccounts(
        accounts=[found[key] for key in sorted(found)],
        totals=[TypeTotal(key[0], key[1], *v) for key, v in sorted(sums.items())],
    )


_POSTED_PHASES: list[ColumnElement[str]] = [
    literal_column("'posted'"),
    literal_column("'post_pending'"),
]


@functools.cache
def _owner_accounts_statement() -> Select[Any]:
    # Built once: the statement, its cache key and its compiled form are reused per call.
    a, totals = tables.accounts, tables.account_totals
    joined = a.outerjoin(
        totals,
        # Literal phases: an IN of bound values is re-expanded at every execution.
        and_(totals.c.account_id == a.c.id, totals.c.phase.in_(_POSTED_PHASES)),
    )
    return (
        select(
            a,
            totals.c.type.label("total_type"),
            totals.c.credit_amount,
            totals.c.credit_count,
            totals.c.debit_amount,
            totals.c.debit_count,
        )
        .select_from(joined)
        .where(a.c.owner_type == bindparam("owner_type"), a.c.owner_id == bindparam("owner_id"))
    )


def _running_totals_by_type(session: Session, ids: list[int]) -> list[TypeTotal]:
    totals = tables.account_totals
    rows = session.execute(
        select(
            totals.c.account_id,
            totals.c.type,
            func.sum(totals.c.credit_amount),
            func.sum(totals.c.credit_count),
            func.sum(totals.c.debit_amount),
            func.sum(totals.c.debit_count),
        )
        .where(totals.c.account_id.in_(ids), totals.c.phase.in_(("posted", "post_pending")))
        .group_by(totals.c.account_id, totals.c.type)
        .order_by(totals.c.account_id, totals.c.type)
    )
    return [
        TypeTotal(account_id, type_, int(credits), int(credit_count), int(debits), int(debit_count))
        for account_id, type_, credits, credit_count, debits, debit_count in rows
    ]
