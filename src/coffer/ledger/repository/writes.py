"""Posting's writes: one batch's transfers, holds, accounts and chain head, per dialect.

Every paired check of a write raises `InvariantViolated` before the caller can commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert

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

    On PostgreSQL: one COPY for the transfers, then one pipeline: the holds' statements (when
    there are any), the running totals' two upserts, and one statement that updates the
    accounts and the chain head.
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
        _sqlite_add_totals(conn, _Totals.of(rows))
        return
    _pg_copy_transfers(conn, rows)
    pg = _driver(conn)
    finish_params = (*_account_columns(changed), *_chain_params(head))
    totals = _Totals.of(rows)
    with _driver_errors(conn, _PG_FINISH_BATCH):
        finished = pg.cursor()
        # One round trip: the holds' statements, the running totals and the final statement.
        with pg.pipeline():
            if pending_rows:
                pg.cursor().execute(_PG_INSERT_HOLDS, _hold_columns(pending_rows, hold_types))
            if resolutions:
                resolved = pg.cursor()
                resolved.execute(_PG_RESOLVE_HOLDS, _resolution_columns(resolutions))
            pg.cursor().execute(_PG_ADD_ACCOUNT_TOTALS, totals.account_columns())
            pg.cursor().execute(_PG_ADD_DAILY_TOTALS, totals.daily_columns())
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


@dataclass(slots=True)
class _Totals:
    """A batch's transfers summed per running-total key (each key once: a statement may not
    touch a row twice)."""

    # (account, type, phase) -> [debit count, debit amount, credit count, credit amount]
    by_account: dict[tuple[int, str, str], list[int]]
    # (UTC day, asset, type, phase) -> [count, amount]
    by_day: dict[tuple[date, str, str, str], list[int]]

    @classmethod
    def of(cls, rows: Sequence[TransferRow]) -> _Totals:
        by_account: dict[tuple[int, str, str], list[int]] = {}
        by_day: dict[tuple[date, str, str, str], list[int]] = {}
        days: dict[datetime, date] = {}  # a batch's rows share one created_at
        for r in rows:
            debit = by_account.get((r.debit_account_id, r.type, r.phase))
            if debit is None:
                debit = by_account[r.debit_account_id, r.type, r.phase] = [0, 0, 0, 0]
            debit[0] += 1
            debit[1] += r.amount
            credit = by_account.get((r.credit_account_id, r.type, r.phase))
            if credit is None:
                credit = by_account[r.credit_account_id, r.type, r.phase] = [0, 0, 0, 0]
            credit[2] += 1
            credit[3] += r.amount
            day = days.get(r.created_at)
            if day is None:
                day = days[r.created_at] = r.created_at.astimezone(UTC).date()
            daily = by_day.get((day, r.asset, r.type, r.phase))
            if daily is None:
                daily = by_day[day, r.asset, r.type, r.phase] = [0, 0]
            daily[0] += 1
            daily[1] += r.amount
        return cls(by_account, by_day)

    def account_columns(self) -> tuple[Any, ...]:
        keys, sums = self.by_account.keys(), self.by_account.values()
        return (
            ",".join(str(k[0]) for k in keys),
            [k[1] for k in keys],
            [k[2] for k in keys],
            *(",".join(str(v[i]) for v in sums) for i in range(4)),
        )

    def daily_columns(self) -> tuple[Any, ...]:
        keys, sums = self.by_day.keys(), self.by_day.values()
        return (
            ",".join(k[0].isoformat() for k in keys),
            [k[1] for k in keys],
            [k[2] for k in keys],
            [k[3] for k in keys],
            *(",".join(str(v[i]) for v in sums) for i in range(2)),
        )


_PG_ADD_ACCOUNT_TOTALS = """
INSERT INTO ledger_account_totals AS t
    (account_id, type, phase, debit_count, debit_amount, credit_count, credit_amount)
SELECT * FROM unnest(string_to_array(%s, ',')::bigint[], %s::varchar[], %s::varchar[],
                     string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                     string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[])
ON CONFLICT (account_id, type, phase) DO UPDATE SET
    debit_count = t.debit_count + EXCLUDED.debit_count,
    debit_amount = t.debit_amount + EXCLUDED.debit_amount,
    credit_count = t.credit_count + EXCLUDED.credit_count,
    credit_amount = t.credit_amount + EXCLUDED.credit_amount
"""
_PG_ADD_DAILY_TOTALS = """
INSERT INTO ledger_daily_totals AS t (day, asset, type, phase, count, amount)
SELECT * FROM unnest(string_to_array(%s, ',')::date[], %s::varchar[], %s::varchar[],
                     %s::varchar[], string_to_array(%s, ',')::bigint[],
                     string_to_array(%s, ',')::bigint[])
ON CONFLICT (day, asset, type, phase) DO UPDATE SET
    count = t.count + EXCLUDED.count, amount = t.amount + EXCLUDED.amount
"""
_SQLITE_ADD_ACCOUNT_TOTALS = """
INSERT INTO ledger_account_totals
    (account_id, type, phase, debit_count, debit_amount, credit_count, credit_amount)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, type, phase) DO UPDATE SET
    debit_count = debit_count + excluded.debit_count,
    debit_amount = debit_amount + excluded.debit_amount,
    credit_count = credit_count + excluded.credit_count,
    credit_amount = credit_amount + excluded.credit_amount
"""
_SQLITE_ADD_DAILY_TOTALS = """
INSERT INTO ledger_daily_totals (day, asset, type, phase, count, amount)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (day, asset, type, phase) DO UPDATE SET
    count = count + excluded.count, amount = amount + excluded.amount
"""


def _sqlite_add_totals(conn: Connection, totals: _Totals) -> None:
    with _driver_errors(conn, _SQLITE_ADD_ACCOUNT_TOTALS):
        cursor = _driver(conn).cursor()
        cursor.executemany(
            _SQLITE_ADD_ACCOUNT_TOTALS, [(*k, *v) for k, v in totals.by_account.items()]
        )
        cursor.executemany(
            _SQLITE_ADD_DAILY_TOTALS,
            [(k[0].isoformat(), k[1], k[2], k[3], *v) for k, v in totals.by_day.items()],
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
