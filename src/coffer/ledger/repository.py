"""All of the ledger's SQL. Posting decides; this module reads and writes rows.

Writes come in sets (one statement per table per batch) so a batch of a thousand transfers costs
a handful of round trips, and a hot account's row is written once per batch. PostgreSQL gets
set statements (COPY, `unnest` of array parameters), which send a whole batch at once; SQLite
gets the same rows through `executemany`.

The statements a batch runs every time (lock the chain and the accounts, insert the transfers and
holds, update the accounts and the chain) go through the driver's own cursor rather than Core:
they are fixed text, so Core's compilation and row objects are pure overhead. On PostgreSQL a
batch costs five round trips (it cost eight):
- BEGIN and the locks travel together in psycopg's pipeline mode (one round trip);
- the transfers are written with binary COPY (two), whose rows psycopg encodes in C (about 1 µs
  a row, against 5 µs or more for the same rows as 18 array parameters);
- the accounts and the chain head are updated by one statement (one), after the holds' own
  statements in the same pipeline when there are any; then the caller's COMMIT (one);
- lists of integers travel as one comma-separated text each (`string_to_array`), which costs
  psycopg one string where an array parameter costs a Python call per element.
Driver errors are raised as SQLAlchemy's, as Core would raise them. bench/README.md has the
measurements behind each choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError

from coffer.ledger.errors import InvariantViolated
from coffer.ledger.tables import (
    CHAIN_ROW_ID,
    GENESIS_HASH,
    accounts,
    assets,
    chain,
    holds,
    transfers,
)
from coffer.ledger.types import Account, AccountFlags, Asset, Hold, HoldStatus, Phase, Transfer

# IN lists are cut into pieces of this size: SQLite allows 32,766 bound parameters per statement.
_IN_CHUNK = 2_000


@dataclass(slots=True)
class ChainHead:
    last_transfer_id: int
    last_hash: bytes
    last_created_at: datetime | None


@dataclass(slots=True)
class AccountState:
    """An account's row as locked for one batch: the counters as read, and as they will be."""

    id: int
    asset: str
    flags: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    read: tuple[int, int, int, int]  # the four counters as read, for the guarded UPDATE

    def counters(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)


@dataclass(slots=True)
class TransferRow:
    """A transfer about to be inserted (everything but its hash is decided before hashing)."""

    id: int
    group_id: int
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: int
    type: str
    phase: str
    pending_id: int | None
    reversal_of: int | None
    idempotency_source: str
    idempotency_key: str | None
    metadata_json: str
    expires_at: datetime | None
    created_at: datetime
    debit_balance_after: int
    credit_balance_after: int
    hash: bytes = b""


@dataclass(slots=True)
class HoldResolution:
    hold_id: int
    status: HoldStatus
    resolved_by: int
    resolved_at: datetime


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under SQLAlchemy's (psycopg or sqlite3), in its transaction."""
    return conn.connection.driver_connection


@contextlib.contextmanager
def _driver_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise the driver's errors as SQLAlchemy's and invalidate a lost connection, as Core does."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dbapi.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc


# ---------------------------------------------------------------------------------------------
# Conversions


def transfer_from_row(row: Row[Any]) -> Transfer:
    m = row._mapping
    return Transfer(
        id=m["id"],
        group_id=m["group_id"],
        debit_account_id=m["debit_account_id"],
        credit_account_id=m["credit_account_id"],
        asset=m["asset"],
        amount=m["amount"],
        type=m["type"],
        phase=Phase(m["phase"]),
        pending_id=m["pending_id"],
        reversal_of=m["reversal_of"],
        idempotency_source=m["idempotency_source"],
        idempotency_key=m["idempotency_key"],
        metadata=json.loads(m["metadata"]),
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        debit_balance_after=m["debit_balance_after"],
        credit_balance_after=m["credit_balance_after"],
        hash=bytes(m["hash"]),
    )


_PHASES = {phase.value: phase for phase in Phase}
# transfer_from_insert passes Transfer's fields by position: pin their order here.
assert tuple(f.name for f in dataclasses.fields(Transfer)) == (
    "id", "group_id", "debit_account_id", "credit_account_id", "asset", "amount", "type",
    "phase", "pending_id", "reversal_of", "idempotency_source", "idempotency_key", "metadata",
    "expires_at", "created_at", "debit_balance_after", "credit_balance_after", "hash",
)  # fmt: skip


def transfer_from_insert(row: TransferRow) -> Transfer:
    # Positional, in Transfer's field order: this runs once per transfer written.
    metadata_json = row.metadata_json
    return Transfer(
        row.id,
        row.group_id,
        row.debit_account_id,
        row.credit_account_id,
        row.asset,
        row.amount,
        row.type,
        _PHASES[row.phase],
        row.pending_id,
        row.reversal_of,
        row.idempotency_source,
        row.idempotency_key,
        {} if metadata_json == "{}" else json.loads(metadata_json),
        row.expires_at,
        row.created_at,
        row.debit_balance_after,
        row.credit_balance_after,
        row.hash,
    )


def account_from_row(row: Row[Any]) -> Account:
    m = row._mapping
    return Account(
        id=m["id"],
        asset=m["asset"],
        owner_type=m["owner_type"],
        owner_id=m["owner_id"],
        kind=m["kind"],
        flags=AccountFlags(m["flags"]),
        debits_posted=m["debits_posted"],
        credits_posted=m["credits_posted"],
        debits_pending=m["debits_pending"],
        credits_pending=m["credits_pending"],
        created_at=m["created_at"],
    )


def hold_from_row(row: Row[Any]) -> Hold:
    m = row._mapping
    return Hold(
        id=m["id"],
        debit_account_id=m["debit_account_id"],
        credit_account_id=m["credit_account_id"],
        asset=m["asset"],
        amount=m["amount"],
        type=m["type"],
        status=HoldStatus(m["status"]),
        expires_at=m["expires_at"],
        resolved_by=m["resolved_by"],
        resolved_at=m["resolved_at"],
    )


# ---------------------------------------------------------------------------------------------
# Assets and accounts (cold paths)


def get_asset(conn: Connection, code: str) -> Asset | None:
    row = conn.execute(select(assets.c.code, assets.c.scale).where(assets.c.code == code)).first()
    return None if row is None else Asset(code=row.code, scale=row.scale)


def list_assets(conn: Connection) -> list[Asset]:
    rows = conn.execute(select(assets.c.code, assets.c.scale).order_by(assets.c.code))
    return [Asset(code=r.code, scale=r.scale) for r in rows]


def find_account(
    conn: Connection, *, asset: str, owner_type: str, owner_id: str, kind: str
) -> Account | None:
    row = conn.execute(
        select(accounts).where(
            accounts.c.asset == asset,
            accounts.c.owner_type == owner_type,
            accounts.c.owner_id == owner_id,
            accounts.c.kind == kind,
        )
    ).first()
    return None if row is None else account_from_row(row)


def insert_account_if_absent(
    conn: Connection,
    *,
    asset: str,
    owner_type: str,
    owner_id: str,
    kind: str,
    flags: int,
    now: datetime,
) -> None:
    """Insert the account unless it exists; concurrent openers of one account both succeed."""
    dialect_insert = pg_insert if _is_postgres(conn) else sqlite_insert
    conn.execute(
        dialect_insert(accounts)
        .values(
            asset=asset,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            flags=flags,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["asset", "owner_type", "owner_id", "kind"])
    )


def insert_asset_if_absent(conn: Connection, *, code: str, scale: int, now: datetime) -> None:
    dialect_insert = pg_insert if _is_postgres(conn) else sqlite_insert
    conn.execute(
        dialect_insert(assets)
        .values(code=code, scale=scale, created_at=now)
        .on_conflict_do_nothing(index_elements=["code"])
    )


def get_accounts(conn: Connection, account_ids: Collection[int]) -> dict[int, Account]:
    found: dict[int, Account] = {}
    for chunk in _chunks(sorted(account_ids)):
        for row in conn.execute(select(accounts).where(accounts.c.id.in_(chunk))):
            found[row.id] = account_from_row(row)
    return found


def accounts_of_owner(conn: Connection, *, owner_type: str, owner_id: str) -> list[Account]:
    rows = conn.execute(
        select(accounts)
        .where(accounts.c.owner_type == owner_type, accounts.c.owner_id == owner_id)
        .order_by(accounts.c.id)
    )
    return [account_from_row(r) for r in rows]


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


def _int_list(values: Iterable[int]) -> str:
    """Integers as one text parameter, for `string_to_array(%s, ',')::bigint[]`."""
    return ",".join(map(str, values))


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


# ---------------------------------------------------------------------------------------------
# Posting: writes


def write_batch(
    conn: Connection,
    *,
    rows: Sequence[TransferRow],
    hold_types: dict[int, str],
    resolutions: Sequence[HoldResolution],
    states: Sequence[AccountState],
    head: ChainHead,
) -> None:
    """Write a batch's decisions: its transfers, the holds they open and resolve, each account
    that changed (guarded by the counters it was read with) and the chain head.

    On PostgreSQL: one COPY for the transfers, then one statement that updates the accounts
    and the chain head (after the holds' statements, in the same pipeline, when there are any).
    Every paired assertion is checked before this returns, so before the caller can commit.
    """
    assert rows, "an empty batch writes nothing"
    pending_rows = [r for r in rows if r.phase == _PENDING]
    changed = [s for s in states if s.counters() != s.read]
    if not _is_postgres(conn):
        _sqlite_insert_transfers(conn, rows)
        _insert_holds(conn, pending_rows, type_of=hold_types)
        _sqlite_resolve_holds(conn, resolutions)
        _sqlite_update_accounts(conn, changed)
        _sqlite_update_chain(conn, head)
        return
    _pg_copy_transfers(conn, rows)
    pg = _driver(conn)
    finish_params = (*_account_columns(changed), *_chain_params(head))
    with _driver_errors(conn, _PG_FINISH_BATCH):
        finished = pg.cursor()
        if pending_rows or resolutions:
            with pg.pipeline():
                if pending_rows:
                    pg.cursor().execute(_PG_INSERT_HOLDS, _hold_columns(pending_rows, hold_types))
                if resolutions:
                    resolved = pg.cursor()
                    resolved.execute(_PG_RESOLVE_HOLDS, _resolution_columns(resolutions))
                finished.execute(_PG_FINISH_BATCH, finish_params)
        else:
            finished.execute(_PG_FINISH_BATCH, finish_params)
        finish = finished.fetchone()
    if resolutions:
        _expect_rows(resolved.rowcount, len(resolutions), "holds resolved (each must be open)")
    if finish is None:
        raise InvariantViolated("the batch's final statement returned no row")
    accounts_updated, chain_updated = finish
    # Paired assertion: every row we decided on was exactly as we read it under the lock.
    _expect_rows(accounts_updated, len(changed), "accounts updated")
    _expect_rows(chain_updated, 1, "chain heads updated")


def _expect_rows(count: int, expected: int, what: str) -> None:
    """The paired check of a write: it touched exactly the rows it was decided for.

    An `if`, not an `assert`, so `python -O` keeps it; the error rolls the batch back."""
    if count != expected:
        raise InvariantViolated(f"{what}: {count}, expected {expected}")


_PENDING = Phase.PENDING.value
# Spelled out in the statements below (an f-string would be SQL built from values).
assert HoldStatus.OPEN.value == "open"

_PG_COPY_TRANSFERS = """
COPY ledger_transfers (
    id, group_id, debit_account_id, credit_account_id, asset, amount, type, phase, pending_id,
    reversal_of, idempotency_source, idempotency_key, metadata, expires_at, created_at,
    debit_balance_after, credit_balance_after, hash)
FROM STDIN (FORMAT BINARY)
"""
# The columns' exact types: binary COPY sends each value in its column's own binary form.
_PG_COPY_TRANSFER_TYPES = (
    "int8", "int8", "int8", "int8", "varchar", "int8", "varchar", "varchar", "int8",
    "int8", "varchar", "varchar", "text", "timestamptz", "timestamptz",
    "int8", "int8", "bytea",
)  # fmt: skip


def _pg_copy_transfers(conn: Connection, rows: Sequence[TransferRow]) -> None:
    """Insert the rows with one binary COPY: every constraint, index and foreign key applies
    as to an INSERT; psycopg encodes the rows in C."""
    with _driver_errors(conn, _PG_COPY_TRANSFERS):
        cursor = _driver(conn).cursor()
        with cursor.copy(_PG_COPY_TRANSFERS) as copy:
            copy.set_types(_PG_COPY_TRANSFER_TYPES)
            write_row = copy.write_row
            for r in rows:
                assert r.created_at.tzinfo is not None, "naive datetimes never reach the database"
                write_row(
                    (
                        r.id,
                        r.group_id,
                        r.debit_account_id,
                        r.credit_account_id,
                        r.asset,
                        r.amount,
                        r.type,
                        r.phase,
                        r.pending_id,
                        r.reversal_of,
                        r.idempotency_source,
                        r.idempotency_key,
                        r.metadata_json,
                        r.expires_at,
                        r.created_at,
                        r.debit_balance_after,
                        r.credit_balance_after,
                        r.hash,
                    )
                )
        _expect_rows(cursor.rowcount, len(rows), "transfers copied")


def _sqlite_insert_transfers(conn: Connection, rows: Sequence[TransferRow]) -> None:
    to_text = _sqlite_datetime(conn)
    created_text: dict[datetime, Any] = {}  # a batch's rows share one created_at
    values = []
    for r in rows:
        created = created_text.get(r.created_at)
        if created is None:
            created = created_text[r.created_at] = to_text(r.created_at)
        values.append(
            (
                r.id,
                r.group_id,
                r.debit_account_id,
                r.credit_account_id,
                r.asset,
                r.amount,
                r.type,
                r.phase,
                r.pending_id,
                r.reversal_of,
                r.idempotency_source,
                r.idempotency_key,
                r.metadata_json,
                None if r.expires_at is None else to_text(r.expires_at),
                created,
                r.debit_balance_after,
                r.credit_balance_after,
                r.hash,
            )
        )
    with _driver_errors(conn, _SQLITE_INSERT_TRANSFER):
        cursor = _driver(conn).cursor()
        cursor.executemany(_SQLITE_INSERT_TRANSFER, values)
        count = cursor.rowcount
    _expect_rows(count, len(rows), "transfers inserted")


_SQLITE_INSERT_TRANSFER = """
INSERT INTO ledger_transfers (
    id, group_id, debit_account_id, credit_account_id, asset, amount, type, phase, pending_id,
    reversal_of, idempotency_source, idempotency_key, metadata, expires_at, created_at,
    debit_balance_after, credit_balance_after, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


_PG_INSERT_HOLDS = """
INSERT INTO ledger_holds (
    id, debit_account_id, credit_account_id, asset, amount, type, status, expires_at,
    resolved_by, resolved_at)
SELECT v.id, v.debit_account_id, v.credit_account_id, v.asset, v.amount, v.type, 'open',
       v.expires_at, NULL, NULL
FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::varchar[], %b::bigint[],
            %b::varchar[], %b::timestamptz[])
     AS v(id, debit_account_id, credit_account_id, asset, amount, type, expires_at)
"""


def _hold_columns(rows: Sequence[TransferRow], type_of: dict[int, str]) -> list[list[Any]]:
    return [
        [r.id for r in rows],
        [r.debit_account_id for r in rows],
        [r.credit_account_id for r in rows],
        [r.asset for r in rows],
        [r.amount for r in rows],
        [type_of[r.id] for r in rows],
        [r.expires_at for r in rows],
    ]


def _insert_holds(
    conn: Connection, rows: Sequence[TransferRow], *, type_of: dict[int, str]
) -> None:
    """Register the pending transfers among `rows` as open holds (Core: few per batch)."""
    if not rows:
        return
    values = [
        {
            "id": r.id,
            "debit_account_id": r.debit_account_id,
            "credit_account_id": r.credit_account_id,
            "asset": r.asset,
            "amount": r.amount,
            "type": type_of[r.id],
            "status": HoldStatus.OPEN.value,
            "expires_at": r.expires_at,
            "resolved_by": None,
            "resolved_at": None,
        }
        for r in rows
    ]
    conn.execute(insert(holds), values)


# The status guard is the paired assertion that nobody resolved a hold behind our back: the
# caller checks that every hold it resolves was updated.
_PG_RESOLVE_HOLDS = """
UPDATE ledger_holds AS h
SET status = v.status, resolved_by = v.resolved_by, resolved_at = v.resolved_at
FROM unnest(%b::bigint[], %b::varchar[], %b::bigint[], %b::timestamptz[])
     AS v(id, status, resolved_by, resolved_at)
WHERE h.id = v.id AND h.status = 'open'
"""
_SQLITE_RESOLVE_HOLD = """
UPDATE ledger_holds SET status = ?, resolved_by = ?, resolved_at = ?
WHERE id = ? AND status = 'open'
"""


def _resolution_columns(resolutions: Sequence[HoldResolution]) -> list[list[Any]]:
    return [
        [r.hold_id for r in resolutions],
        [r.status.value for r in resolutions],
        [r.resolved_by for r in resolutions],
        [r.resolved_at for r in resolutions],
    ]


def _sqlite_resolve_holds(conn: Connection, resolutions: Sequence[HoldResolution]) -> None:
    if not resolutions:
        return
    to_text = _sqlite_datetime(conn)
    with _driver_errors(conn, _SQLITE_RESOLVE_HOLD):
        cursor = _driver(conn).cursor()
        cursor.executemany(
            _SQLITE_RESOLVE_HOLD,
            [
                (r.status.value, r.resolved_by, to_text(r.resolved_at), r.hold_id)
                for r in resolutions
            ],
        )
        # executemany sums the rows changed by every parameter set.
        count = cursor.rowcount
    _expect_rows(count, len(resolutions), "holds resolved (each must be open)")


def _sqlite_datetime(conn: Connection) -> Any:
    """How the tables' UTCDateTime columns write a datetime on this dialect, exactly as Core
    does (SQLite: text in one fixed format, which its index order and comparisons rely on)."""
    processor = holds.c.resolved_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert processor is not None
    return processor


def _sqlite_read_datetime(conn: Connection) -> Any:
    """How Core reads a UTCDateTime column back on this dialect (an aware UTC datetime)."""
    type_ = holds.c.resolved_at.type.dialect_impl(conn.dialect)
    processor = type_.result_processor(conn.dialect, None)
    assert processor is not None
    return processor


_SQLITE_UPDATE_ACCOUNT = """
UPDATE ledger_accounts
SET debits_posted = ?, credits_posted = ?, debits_pending = ?, credits_pending = ?
WHERE id = ?
  AND debits_posted = ? AND credits_posted = ? AND debits_pending = ? AND credits_pending = ?
"""


def _account_columns(changed: Sequence[AccountState]) -> list[str]:
    """id, the four counters as read, the four as they will be: one text list each."""
    if not changed:
        return [""] * 9  # string_to_array('', ',') is the empty array
    rows = [(s.id, *s.read, *s.counters()) for s in changed]
    return [_int_list(column) for column in zip(*rows, strict=True)]


def _sqlite_update_accounts(conn: Connection, changed: Sequence[AccountState]) -> None:
    """Write each changed account once, guarded by the counters it was read with."""
    if not changed:
        return
    with _driver_errors(conn, _SQLITE_UPDATE_ACCOUNT):
        cursor = _driver(conn).cursor()
        cursor.executemany(
            _SQLITE_UPDATE_ACCOUNT,
            [
                (
                    s.debits_posted,
                    s.credits_posted,
                    s.debits_pending,
                    s.credits_pending,
                    s.id,
                    *s.read,
                )
                for s in changed
            ],
        )
        # executemany sums the rows changed by every parameter set.
        updated = cursor.rowcount
    # Paired assertion: every row we decided on was exactly as we read it under the lock.
    _expect_rows(updated, len(changed), "accounts updated")


# The end of every batch, as one statement (one round trip, one parse): the guarded account
# UPDATEs and the chain head's, returning how many rows each updated for the paired assertions.
_PG_FINISH_BATCH = """
WITH accounts_updated AS (
    UPDATE ledger_accounts AS a
    SET debits_posted = v.n_dp, credits_posted = v.n_cp,
        debits_pending = v.n_dpe, credits_pending = v.n_cpe
    FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                string_to_array(%s, ',')::bigint[])
         AS v(id, o_dp, o_cp, o_dpe, o_cpe, n_dp, n_cp, n_dpe, n_cpe)
    WHERE a.id = v.id
      AND a.debits_posted = v.o_dp AND a.credits_posted = v.o_cp
      AND a.debits_pending = v.o_dpe AND a.credits_pending = v.o_cpe
    RETURNING 1
), chain_updated AS (
    UPDATE ledger_chain SET last_transfer_id = %b, last_hash = %b, last_created_at = %b
    WHERE id = 1
    RETURNING 1
)
SELECT (SELECT count(*) FROM accounts_updated), (SELECT count(*) FROM chain_updated)
"""


def _chain_params(head: ChainHead) -> tuple[int, bytes, datetime | None]:
    assert head.last_created_at is None or head.last_created_at.tzinfo is not None
    return (head.last_transfer_id, head.last_hash, head.last_created_at)


def _sqlite_update_chain(conn: Connection, head: ChainHead) -> None:
    last_created_at = head.last_created_at
    params = (
        head.last_transfer_id,
        head.last_hash,
        None if last_created_at is None else _sqlite_datetime(conn)(last_created_at),
    )
    with _driver_errors(conn, _SQLITE_UPDATE_CHAIN):
        cursor = _driver(conn).cursor()
        cursor.execute(_SQLITE_UPDATE_CHAIN, params)
        count = cursor.rowcount
    _expect_rows(count, 1, "chain heads updated")


_SQLITE_UPDATE_CHAIN = (
    "UPDATE ledger_chain SET last_transfer_id = ?, last_hash = ?, last_created_at = ? WHERE id = 1"
)


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


def open_holds(conn: Connection) -> list[Hold]:
    rows = conn.execute(
        select(holds).where(holds.c.status == HoldStatus.OPEN.value).order_by(holds.c.id)
    )
    return [hold_from_row(r) for r in rows]
