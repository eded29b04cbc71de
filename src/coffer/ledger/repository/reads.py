"""Reads outside posting: histories, single rows, the chain head, and streams for `verify`."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Row

from coffer.ledger.repository._common import (
    ChainHead,
    hold_from_row,
    transfer_from_row,
)
from coffer.ledger.tables import (
    CHAIN_ROW_ID,
    account_totals,
    accounts,
    chain,
    daily_totals,
    holds,
    transfers,
)
from coffer.ledger.types import Hold, HoldStatus, Transfer

# ---------------------------------------------------------------------------------------------
# Reads


def account_history(
    conn: Connection,
    *,
    account_id: int,
    limit: int,
    before_id: int | None,
    types: Collection[str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> list[Transfer]:
    """Newest first, keyset-paged on id (ids are in commit order, so also in time order)."""

    def side(column: Any) -> Any:
        query = select(transfers).where(column == account_id)
        if before_id is not None:
            query = query.where(transfers.c.id < before_id)
        if types:
            query = query.where(transfers.c.type.in_(sorted(types)))
        if created_from is not None:
            query = query.where(transfers.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(transfers.c.created_at < created_to)
        return query.order_by(transfers.c.id.desc()).limit(limit)

    # Two index range scans, merged: an OR over both columns would defeat both indexes.
    debit_side = side(transfers.c.debit_account_id).subquery()
    credit_side = side(transfers.c.credit_account_id).subquery()
    merged = select(debit_side).union_all(select(credit_side)).subquery()
    rows = conn.execute(select(merged).order_by(merged.c.id.desc()).limit(limit))
    return [transfer_from_row(r) for r in rows]


def last_transfer_touching(
    conn: Connection, *, account_id: int, at_or_before: datetime
) -> Transfer | None:
    """The last transfer on an account made at or before an instant.

    Times never run backwards along ids, so the instant becomes an id bound first (one probe of
    the created_at index); each side is then one probe of its (account, id) index.
    """
    bound = conn.execute(
        select(func.max(transfers.c.id)).where(transfers.c.created_at <= at_or_before)
    ).scalar()
    if bound is None:
        return None

    def side(column: Any) -> Any:
        return (
            select(transfers)
            .where(column == account_id, transfers.c.id <= bound)
            .order_by(transfers.c.id.desc())
            .limit(1)
            .subquery()
        )

    debit_side, credit_side = (
        side(transfers.c.debit_account_id),
        side(transfers.c.credit_account_id),
    )
    merged = select(debit_side).union_all(select(credit_side)).subquery()
    row = conn.execute(select(merged).order_by(merged.c.id.desc()).limit(1)).first()
    return None if row is None else transfer_from_row(row)


def get_hold(conn: Connection, hold_id: int) -> Hold | None:
    row = conn.execute(select(holds).where(holds.c.id == hold_id)).first()
    return None if row is None else hold_from_row(row)


def read_chain(conn: Connection) -> ChainHead | None:
    row = conn.execute(
        select(chain.c.last_transfer_id, chain.c.last_hash, chain.c.last_created_at).where(
            chain.c.id == CHAIN_ROW_ID
        )
    ).first()
    if row is None:
        return None
    return ChainHead(row.last_transfer_id, bytes(row.last_hash), row.last_created_at)


def stream_transfers(conn: Connection, *, batch_size: int = 5_000) -> Iterator[Row[Any]]:
    """Every transfer in id order, a page at a time (keyset, bounded memory)."""
    after = 0
    while True:
        rows = conn.execute(
            select(transfers)
            .where(transfers.c.id > after)
            .order_by(transfers.c.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id


def stream_accounts(conn: Connection, *, batch_size: int = 5_000) -> Iterator[Row[Any]]:
    after = 0
    while True:
        rows = conn.execute(
            select(accounts).where(accounts.c.id > after).order_by(accounts.c.id).limit(batch_size)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id


def stream_account_totals(conn: Connection) -> Iterator[Row[Any]]:
    """Every running total per account, type and phase (a few rows per account)."""
    yield from conn.execute(select(account_totals)).yield_per(5_000)


def stream_daily_totals(conn: Connection) -> Iterator[Row[Any]]:
    """Every running total per day, asset, type and phase."""
    yield from conn.execute(select(daily_totals)).yield_per(5_000)


def open_holds(conn: Connection) -> list[Hold]:
    rows = conn.execute(
        select(holds).where(holds.c.status == HoldStatus.OPEN.value).order_by(holds.c.id)
    )
    return [hold_from_row(r) for r in rows]
