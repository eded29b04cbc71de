"""Row shapes, conversions and the driver-level helpers every part of the repository uses."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError

from coffer.ledger.errors import InvariantViolated
from coffer.ledger.tables import (
    holds,
)
from coffer.ledger.types import Account, AccountFlags, Hold, HoldStatus, Phase, Transfer

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


def dialect_insert(conn: Connection, table: Table) -> PgInsert | SqliteInsert:
    """The dialect's own INSERT, for ON CONFLICT DO NOTHING (the generic one lacks it). The twin
    of `coffer.db.dialect.insert`, which the ledger may not import."""
    if _is_postgres(conn):
        return pg_insert(table)
    return sqlite_insert(table)


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
    return account_from_mapping(row._mapping)


def account_from_mapping(m: Mapping[Any, Any]) -> Account:
    """An account from its row's columns by name (a Row's `_mapping`, or a dict of them)."""
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


def _int_list(values: Iterable[int]) -> str:
    """Integers as one text parameter, for `string_to_array(%s, ',')::bigint[]`."""
    return ",".join(map(str, values))


def _expect_rows(count: int, expected: int, what: str) -> None:
    """The paired check of a write: it touched exactly the rows it was decided for.

    An `if`, not an `assert`, so `python -O` keeps it; the error rolls the batch back."""
    if count != expected:
        raise InvariantViolated(f"{what}: {count}, expected {expected}")


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
