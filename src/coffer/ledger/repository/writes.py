"""Posting's writes: one batch's transfers, holds, accounts and chain head, per dialect.

Every paired check of a write raises `InvariantViolated` before the caller can commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from coffer.ledger.errors import InvariantViolated
from coffer.ledger.repository._common import (
    AccountState,
    ChainHead,
    HoldResolution,
    TransferRow,
    _driver,
    _driver_errors,
    _expect_rows,
    _int_list,
    _is_postgres,
    _sqlite_datetime,
)
from coffer.ledger.tables import (
    account_totals,
    daily_totals,
    holds,
)
from coffer.ledger.types import HoldStatus, Phase

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
        _write_totals(conn, rows)
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
    _write_totals(conn, rows)


def _write_totals(conn: Connection, rows: Sequence[TransferRow]) -> None:
    """Add the batch's transfers to the running totals: one upsert per table, each key once
    (a statement may not touch a row twice), under the chain head like everything else."""
    by_account: dict[tuple[int, str, str], list[int]] = {}
    by_day: dict[tuple[date, str, str, str], list[int]] = {}
    for r in rows:
        debit = by_account.setdefault((r.debit_account_id, r.type, r.phase), [0, 0, 0, 0])
        debit[0] += 1
        debit[1] += r.amount
        credit = by_account.setdefault((r.credit_account_id, r.type, r.phase), [0, 0, 0, 0])
        credit[2] += 1
        credit[3] += r.amount
        day = r.created_at.astimezone(UTC).date()
        daily = by_day.setdefault((day, r.asset, r.type, r.phase), [0, 0])
        daily[0] += 1
        daily[1] += r.amount
    upsert = pg_insert if _is_postgres(conn) else sqlite_insert
    accounts = upsert(account_totals)
    conn.execute(
        accounts.on_conflict_do_update(
            index_elements=["account_id", "type", "phase"],
            set_={
                name: account_totals.c[name] + accounts.excluded[name]
                for name in ("debit_count", "debit_amount", "credit_count", "credit_amount")
            },
        ),
        [
            {
                "account_id": account_id,
                "type": type_,
                "phase": phase,
                "debit_count": v[0],
                "debit_amount": v[1],
                "credit_count": v[2],
                "credit_amount": v[3],
            }
            for (account_id, type_, phase), v in by_account.items()
        ],
    )
    days = upsert(daily_totals)
    conn.execute(
        days.on_conflict_do_update(
            index_elements=["day", "asset", "type", "phase"],
            set_={name: daily_totals.c[name] + days.excluded[name] for name in ("count", "amount")},
        ),
        [
            {
                "day": day,
                "asset": asset,
                "type": type_,
                "phase": phase,
                "count": v[0],
                "amount": v[1],
            }
            for (day, asset, type_, phase), v in by_day.items()
        ],
    )


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
