"""The whole ledger's history for operators: a keyset search, and summaries that read the
running totals instead of summing transfers.

Transfer ids and `created_at` grow together (both are assigned under the chain head, and time
never goes backwards there), so a time range is first turned into an id range with one index
probe per bound; every scan after that walks the primary key or an (account, id) index within
that range. A summary's cost grows with the days it spans and the edges it cuts, never with the
length of the history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, func, select, union
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger import tables
from coffer.ledger.errors import InvalidTransfer
from coffer.ledger.types import Phase, Transfer

SEARCH_LIMIT_MAX = 500

# summary's accumulator: (asset, type, phase, count, amount)
_Add = Callable[[str, str, str, int, int], None]

# What an operator calls a transfer's status: a hold that was later posted still shows as the
# `pending` transfer that opened it, beside the `posted` one that resolved it.
STATUS_PHASES: dict[str, tuple[str, ...]] = {
    "posted": (Phase.POSTED.value, Phase.POST_PENDING.value),
    "pending": (Phase.PENDING.value,),
    "voided": (Phase.VOID_PENDING.value,),
    "expired": (Phase.EXPIRE_PENDING.value,),
}
STATUS_OF_PHASE = {phase: status for status, phases in STATUS_PHASES.items() for phase in phases}


@dataclass(frozen=True, slots=True)
class Filters:
    """Each field narrows the search when set. `account_ids` set but empty matches nothing;
    `created_from` is inclusive, `created_to` exclusive."""

    account_ids: Collection[int] | None = None
    types: Collection[str] | None = None
    statuses: Collection[str] | None = None
    asset: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def phases(self) -> list[str] | None:
        if self.statuses is None:
            return None
        unknown = set(self.statuses) - set(STATUS_PHASES)
        if unknown:
            raise InvalidTransfer(f"unknown status {sorted(unknown)[0]!r}", field="status")
        return sorted(p for s in self.statuses for p in STATUS_PHASES[s])


@dataclass(frozen=True, slots=True)
class SearchPage:
    transfers: list[Transfer]
    next_before_id: int | None  # pass back as `before_id` for the next (older) page


@dataclass(frozen=True, slots=True)
class SummaryLine:
    asset: str
    type: str
    status: str
    count: int
    amount: int


def id_range(
    session: Session, created_from: datetime | None, created_to: datetime | None
) -> tuple[int, int | None]:
    """[first, end) of the transfer ids made in [created_from, created_to); end None: no end."""
    t = tables.transfers

    def first_at_or_after(moment: datetime) -> int | None:
        return session.execute(
            select(t.c.id).where(t.c.created_at >= moment).order_by(t.c.created_at, t.c.id).limit(1)
        ).scalar()

    first = 1 if created_from is None else first_at_or_after(created_from)
    if first is None:  # nothing at or after the start: an empty range
        return 1, 1
    end = None if created_to is None else first_at_or_after(created_to)
    return first, end


def search(
    session: Session, filters: Filters, *, limit: int = 50, before_id: int | None = None
) -> SearchPage:
    """Transfers matching `filters`, newest first, keyset-paged on the id (never OFFSET)."""
    if type(limit) is not int or not 0 < limit <= SEARCH_LIMIT_MAX:
        raise InvalidTransfer(f"limit must be 1 to {SEARCH_LIMIT_MAX}", field="limit")
    if filters.account_ids is not None and not filters.account_ids:
        return SearchPage([], None)
    first, end = id_range(session, filters.created_from, filters.created_to)
    if before_id is not None:
        end = before_id if end is None else min(end, before_id)
    t = tables.transfers
    ids = select(t.c.id).where(*_conditions(filters, first, end)).order_by(t.c.id.desc())
    if filters.account_ids is not None:
        ids = _touching(filters.account_ids, filters, first, end, limit + 1)
    found = list(session.execute(ids.limit(limit + 1)).scalars())
    has_more = len(found) > limit
    found = found[:limit]
    rows = session.execute(select(t).where(t.c.id.in_(found)).order_by(t.c.id.desc())).all()
    transfers = [repo.transfer_from_row(row) for row in rows]
    return SearchPage(transfers, transfers[-1].id if has_more and transfers else None)


def _conditions(filters: Filters, first: int, end: int | None) -> list[ColumnElement[bool]]:
    t = tables.transfers
    conditions: list[ColumnElement[bool]] = [t.c.id >= first]
    if end is not None:
        conditions.append(t.c.id < end)
    if filters.types is not None:
        conditions.append(t.c.type.in_(sorted(filters.types)))
    phases = filters.phases()
    if phases is not None:
        conditions.append(t.c.phase.in_(phases))
    if filters.asset is not None:
        conditions.append(t.c.asset == filters.asset)
    return conditions


def _touching(
    account_ids: Iterable[int], filters: Filters, first: int, end: int | None, limit: int
) -> Select[tuple[int]]:
    """Ids of transfers on either side of any of the accounts, each walking its own index."""
    t = tables.transfers
    parts = [
        select(t.c.id)
        .where(column == account_id, *_conditions(filters, first, end))
        .order_by(t.c.id.desc())
        .limit(limit)
        .subquery()
        .select()
        for account_id in sorted(set(account_ids))
        for column in (t.c.debit_account_id, t.c.credit_account_id)
    ]
    merged = union(*parts).subquery()  # UNION: a transfer between two of them appears once
    return select(merged.c.id).order_by(merged.c.id.desc())


def summary(session: Session, filters: Filters) -> list[SummaryLine]:
    """Count and amount per (asset, type, status) of the transfers matching `filters`.

    Without an account filter: the daily totals for the whole UTC days inside the range, plus
    a grouped scan of the partial days at its edges. With one: the accounts' running totals when
    there is no time range, else a grouped scan of those accounts' transfers in the range."""
    phases = filters.phases()
    if filters.account_ids is not None and not filters.account_ids:
        return []
    sums: dict[tuple[str, str, str], list[int]] = {}

    def add(asset: str, type_: str, phase: str, count: int, amount: int) -> None:
        if filters.asset is not None and asset != filters.asset:
            return
        if filters.types is not None and type_ not in filters.types:
            return
        if phases is not None and phase not in phases:
            return
        line = sums.setdefault((asset, type_, STATUS_OF_PHASE[phase]), [0, 0])
        line[0] += int(count)
        line[1] += int(amount or 0)

    timeless = filters.created_from is None and filters.created_to is None
    if filters.account_ids is not None and timeless:
        _from_account_totals(session, filters.account_ids, add)
    elif filters.account_ids is not None:
        first, end = id_range(session, filters.created_from, filters.created_to)
        _scan(session, filters, first, end, add)
    else:
        _from_daily_totals(session, filters, add)
    return [SummaryLine(a, ty, st, v[0], v[1]) for (a, ty, st), v in sorted(sums.items())]


def _from_account_totals(session: Session, account_ids: Collection[int], add: _Add) -> None:
    totals, accounts = tables.account_totals, tables.accounts
    rows = session.execute(
        select(
            accounts.c.asset,
            totals.c.type,
            totals.c.phase,
            func.sum(totals.c.debit_count + totals.c.credit_count),
            func.sum(totals.c.debit_amount + totals.c.credit_amount),
        )
        .join(accounts, accounts.c.id == totals.c.account_id)
        .where(totals.c.account_id.in_(sorted(set(account_ids))))
        .group_by(accounts.c.asset, totals.c.type, totals.c.phase)
    )
    for asset, type_, phase, count, amount in rows:
        add(asset, type_, phase, count, amount)


def _from_daily_totals(session: Session, filters: Filters, add: _Add) -> None:
    """Whole UTC days from the daily totals; the cut days at either edge by a scan."""
    start, stop = filters.created_from, filters.created_to
    whole_from: date | None = None  # first whole day, inclusive
    if start is not None:
        whole_from = _day_of(start)
        if _midnight(whole_from) != start:  # the range starts inside a day
            whole_from += timedelta(days=1)
            edge_end = _midnight(whole_from)
            _scan_times(
                session, filters, start, edge_end if stop is None else min(stop, edge_end), add
            )
    whole_to: date | None = None  # last whole day, exclusive
    if stop is not None:
        whole_to = _day_of(stop)
        edge_start = _midnight(whole_to)
        if edge_start != stop and (start is None or edge_start >= start):  # ends inside a day
            _scan_times(session, filters, edge_start, stop, add)
    if whole_from is not None and whole_to is not None and whole_from >= whole_to:
        return
    daily = tables.daily_totals
    query = select(daily.c.asset, daily.c.type, daily.c.phase, daily.c.count, daily.c.amount)
    if whole_from is not None:
        query = query.where(daily.c.day >= whole_from)
    if whole_to is not None:
        query = query.where(daily.c.day < whole_to)
    if filters.asset is not None:
        query = query.where(daily.c.asset == filters.asset)
    for asset, type_, phase, count, amount in session.execute(query):
        add(asset, type_, phase, count, amount)


def _scan_times(
    session: Session, filters: Filters, start: datetime, stop: datetime, add: _Add
) -> None:
    if stop <= start:
        return
    first, end = id_range(session, start, stop)
    _scan(session, filters, first, end, add)


def _scan(session: Session, filters: Filters, first: int, end: int | None, add: _Add) -> None:
    """A grouped scan over the id range (and the accounts, when the filter names some)."""
    t = tables.transfers
    conditions = _conditions(filters, first, end)
    if filters.account_ids is not None:
        ids = sorted(set(filters.account_ids))
        conditions.append(t.c.debit_account_id.in_(ids) | t.c.credit_account_id.in_(ids))
    rows = session.execute(
        select(t.c.asset, t.c.type, t.c.phase, func.count(), func.sum(t.c.amount))
        .where(*conditions)
        .group_by(t.c.asset, t.c.type, t.c.phase)
    )
    for asset, type_, phase, count, amount in rows:
        add(asset, type_, phase, count, amount)


def _day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
