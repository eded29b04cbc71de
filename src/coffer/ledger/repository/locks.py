"""Posting's reads: the chain head, accounts and holds, locked in id order; the transfers a
batch refers to (by idempotency key, as originals of reversals); and the writer connection's
tuning."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from coffer.ledger.repository._common import (
    AccountState,
    ChainHead,
    _chunks,
    _driver,
    _driver_errors,
    _int_list,
    _is_postgres,
    _sqlite_read_datetime,
    hold_from_row,
    transfer_from_row,
)
from coffer.ledger.tables import (
    CHAIN_ROW_ID,
    GENESIS_HASH,
    chain,
    holds,
    transfers,
)
from coffer.ledger.types import Hold, HoldStatus, Transfer

# ---------------------------------------------------------------------------------------------
# A connection that only ever posts batches (the Batcher's)


def open_writer_connection(conn: Connection) -> None:
    """Tune a connection that will run nothing but batches, until `close_writer_connection`.

    PostgreSQL: the batch statements are the same text every time and psycopg prepares them,
    but the server's default (`plan_cache_mode = auto`) keeps planning them afresh for each
    batch, which costs more server CPU than executing them for a small batch (measured here:
    the locks 125 µs a batch planned, 50 µs generic; the final UPDATE 175 µs against 100 µs).
    Their generic plans are the plans they always need (primary-key lookups), so the writer's
    connection uses them. Only this connection: other queries keep the server's default.
    """
    if _is_postgres(conn):
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.commit()


def close_writer_connection(conn: Connection) -> None:
    """Undo `open_writer_connection` before the connection goes back to the pool."""
    if _is_postgres(conn):
        conn.exec_driver_sql("RESET plan_cache_mode")
        conn.commit()


# ---------------------------------------------------------------------------------------------
# Posting: reads under lock


_SQLITE_READ_CHAIN = (
    "SELECT last_transfer_id, last_hash, last_created_at FROM ledger_chain WHERE id = 1"
)


def lock_chain(conn: Connection) -> ChainHead:
    """Take the ledger's write lock: the chain head row (SQLite: the IMMEDIATE transaction)."""
    head = _read_chain_for_update(conn)
    if head is None:
        # The migration inserts the row; a database made without it gets it on first use. Two
        # first writers race on the primary key and one of them fails: both retry.
        conn.execute(
            insert(chain).values(
                id=CHAIN_ROW_ID, last_transfer_id=0, last_hash=GENESIS_HASH, last_created_at=None
            )
        )
        return ChainHead(0, GENESIS_HASH, None)
    return head


def _read_chain_for_update(conn: Connection) -> ChainHead | None:
    if _is_postgres(conn):
        row = conn.execute(
            select(chain.c.last_transfer_id, chain.c.last_hash, chain.c.last_created_at)
            .where(chain.c.id == CHAIN_ROW_ID)
            .with_for_update()
        ).first()
        if row is None:
            return None
        return ChainHead(row.last_transfer_id, bytes(row.last_hash), row.last_created_at)
    # The transaction is IMMEDIATE: it holds the database's write lock already.
    with _driver_errors(conn, _SQLITE_READ_CHAIN):
        cursor = _driver(conn).cursor()
        cursor.execute(_SQLITE_READ_CHAIN)
        raw = cursor.fetchone()
    if raw is None:
        return None
    return ChainHead(raw[0], bytes(raw[1]), _sqlite_read_datetime(conn)(raw[2]))


_PG_LOCK_CHAIN = (
    "SELECT last_transfer_id, last_hash, last_created_at FROM ledger_chain WHERE id = 1 FOR UPDATE"
)
# ORDER BY with FOR UPDATE locks the rows in id order (the lock sits above the sort).
_PG_LOCK_ACCOUNTS = """
SELECT id, asset, flags, debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_accounts WHERE id = ANY(string_to_array(%s, ',')::bigint[])
ORDER BY id FOR UPDATE
"""
_SQLITE_LOCK_ACCOUNTS = """
SELECT id, asset, flags, debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_accounts WHERE id IN ({}) ORDER BY id
"""


def lock_chain_and_accounts(
    conn: Connection, account_ids: Collection[int]
) -> tuple[ChainHead, dict[int, AccountState]]:
    """`lock_chain`, then `lock_accounts`: on PostgreSQL one round trip, BEGIN included."""
    assert CHAIN_ROW_ID == 1
    if not _is_postgres(conn):
        return lock_chain(conn), lock_accounts(conn, account_ids)
    pg = _driver(conn)
    ids = sorted(account_ids)
    with _driver_errors(conn, _PG_LOCK_ACCOUNTS), pg.pipeline():
        chain_cursor = pg.cursor()
        chain_cursor.execute(_PG_LOCK_CHAIN)
        if ids:
            accounts_cursor = pg.cursor()
            accounts_cursor.execute(_PG_LOCK_ACCOUNTS, (_int_list(ids),))
    row = chain_cursor.fetchone()
    states = _account_states(accounts_cursor.fetchall()) if ids else {}
    if row is None:
        # No chain row (a database made without the migration): lock_chain makes it.
        return lock_chain(conn), states
    return ChainHead(row[0], bytes(row[1]), row[2]), states


def lock_accounts(conn: Connection, account_ids: Collection[int]) -> dict[int, AccountState]:
    """Lock the accounts' rows in id order (the one order every writer uses) and read them."""
    ids = sorted(account_ids)
    if not ids:
        return {}
    if _is_postgres(conn):
        with _driver_errors(conn, _PG_LOCK_ACCOUNTS):
            cursor = _driver(conn).cursor()
            cursor.execute(_PG_LOCK_ACCOUNTS, (_int_list(ids),))
            return _account_states(cursor.fetchall())
    # SQLite: the IMMEDIATE transaction already holds the database's write lock.
    states: dict[int, AccountState] = {}
    cursor = _driver(conn).cursor()
    for chunk in _chunks(ids):
        statement = _SQLITE_LOCK_ACCOUNTS.format(", ".join("?" * len(chunk)))  # placeholders
        with _driver_errors(conn, statement):
            cursor.execute(statement, chunk)
            states.update(_account_states(cursor.fetchall()))
    return states


def _account_states(rows: Iterable[tuple[Any, ...]]) -> dict[int, AccountState]:
    states: dict[int, AccountState] = {}
    for account_id, asset, flags, dp, cp, dpe, cpe in rows:
        states[account_id] = AccountState(
            account_id, asset, flags, dp, cp, dpe, cpe, read=(dp, cp, dpe, cpe)
        )
    return states


def transfers_by_idempotency(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Transfer]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, key in keys:
        by_source[source].append(key)
    found: dict[tuple[str, str], Transfer] = {}
    for source, source_keys in by_source.items():
        for chunk in _chunks(source_keys):
            rows = conn.execute(
                select(transfers).where(
                    transfers.c.idempotency_source == source,
                    transfers.c.idempotency_key.in_(chunk),
                )
            )
            for row in rows:
                found[(source, row.idempotency_key)] = transfer_from_row(row)
    return found


def get_transfers(conn: Connection, transfer_ids: Collection[int]) -> dict[int, Transfer]:
    found: dict[int, Transfer] = {}
    for chunk in _chunks(sorted(transfer_ids)):
        for row in conn.execute(select(transfers).where(transfers.c.id.in_(chunk))):
            found[row.id] = transfer_from_row(row)
    return found


def reversed_amounts(conn: Connection, transfer_ids: Collection[int]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for chunk in _chunks(sorted(transfer_ids)):
        rows = conn.execute(
            select(transfers.c.reversal_of, func.sum(transfers.c.amount))
            .where(transfers.c.reversal_of.in_(chunk))
            .group_by(transfers.c.reversal_of)
        )
        for original_id, total in rows:
            totals[original_id] = int(total)
    return totals


_PG_LOCK_HOLDS = """
SELECT id, debit_account_id, credit_account_id, asset, amount, type, status, expires_at,
       resolved_by, resolved_at
FROM ledger_holds WHERE id = ANY(string_to_array(%s, ',')::bigint[]) ORDER BY id FOR UPDATE
"""


def lock_chain_and_holds(
    conn: Connection, hold_ids: Collection[int]
) -> tuple[ChainHead, dict[int, Hold]]:
    """`lock_chain`, then `lock_holds`: on PostgreSQL one round trip, BEGIN included."""
    if not _is_postgres(conn) or not hold_ids:
        return lock_chain(conn), lock_holds(conn, hold_ids)
    pg = _driver(conn)
    with _driver_errors(conn, _PG_LOCK_HOLDS), pg.pipeline():
        chain_cursor = pg.cursor()
        chain_cursor.execute(_PG_LOCK_CHAIN)
        holds_cursor = pg.cursor()
        holds_cursor.execute(_PG_LOCK_HOLDS, (_int_list(sorted(hold_ids)),))
    row = chain_cursor.fetchone()
    found = _holds(holds_cursor.fetchall())
    if row is None:
        return lock_chain(conn), found
    return ChainHead(row[0], bytes(row[1]), row[2]), found


def _holds(rows: Iterable[tuple[Any, ...]]) -> dict[int, Hold]:
    return {
        r[0]: Hold(
            id=r[0],
            debit_account_id=r[1],
            credit_account_id=r[2],
            asset=r[3],
            amount=r[4],
            type=r[5],
            status=HoldStatus(r[6]),
            expires_at=r[7],
            resolved_by=r[8],
            resolved_at=r[9],
        )
        for r in rows
    }


def lock_holds(conn: Connection, hold_ids: Collection[int]) -> dict[int, Hold]:
    if not hold_ids:
        return {}
    if _is_postgres(conn):
        with _driver_errors(conn, _PG_LOCK_HOLDS):
            cursor = _driver(conn).cursor()
            cursor.execute(_PG_LOCK_HOLDS, (_int_list(sorted(hold_ids)),))
            return _holds(cursor.fetchall())
    found: dict[int, Hold] = {}
    for chunk in _chunks(sorted(hold_ids)):
        rows = conn.execute(select(holds).where(holds.c.id.in_(chunk)).with_for_update())
        for row in rows:
            found[row.id] = hold_from_row(row)
    return found


def expired_open_holds(
    conn: Connection, *, now: datetime, limit: int, debit_account_id: int | None = None
) -> list[Hold]:
    query = select(holds).where(
        holds.c.status == HoldStatus.OPEN.value,
        holds.c.expires_at.is_not(None),
        holds.c.expires_at <= now,
    )
    if debit_account_id is not None:
        query = query.where(holds.c.debit_account_id == debit_account_id)
    rows = conn.execute(query.order_by(holds.c.expires_at, holds.c.id).limit(limit))
    return [hold_from_row(r) for r in rows]
