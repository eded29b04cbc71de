"""All of the ledger's SQL. Posting decides; this module reads and writes rows.

Writes come in sets (one statement per table per batch) so a batch of a thousand transfers costs
a handful of round trips, and a hot account's row is written once per batch. PostgreSQL gets
array-parameter statements (`unnest`), which send a whole batch as one statement; other databases
get the same rows through `executemany`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

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


def transfer_from_insert(row: TransferRow) -> Transfer:
    return Transfer(
        id=row.id,
        group_id=row.group_id,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        asset=row.asset,
        amount=row.amount,
        type=row.type,
        phase=Phase(row.phase),
        pending_id=row.pending_id,
        reversal_of=row.reversal_of,
        idempotency_source=row.idempotency_source,
        idempotency_key=row.idempotency_key,
        metadata=json.loads(row.metadata_json),
        expires_at=row.expires_at,
        created_at=row.created_at,
        debit_balance_after=row.debit_balance_after,
        credit_balance_after=row.credit_balance_after,
        hash=row.hash,
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
# Posting: reads under lock


def lock_chain(conn: Connection) -> ChainHead:
    """Take the ledger's write lock: the chain head row (SQLite: the IMMEDIATE transaction)."""
    row = conn.execute(
        select(chain.c.last_transfer_id, chain.c.last_hash, chain.c.last_created_at)
        .where(chain.c.id == CHAIN_ROW_ID)
        .with_for_update()
    ).first()
    if row is None:
        # The migration inserts the row; a database made without it gets it on first use. Two
        # first writers race on the primary key and one of them fails: both retry.
        conn.execute(
            insert(chain).values(
                id=CHAIN_ROW_ID, last_transfer_id=0, last_hash=GENESIS_HASH, last_created_at=None
            )
        )
        return ChainHead(0, GENESIS_HASH, None)
    return ChainHead(row.last_transfer_id, bytes(row.last_hash), row.last_created_at)


def lock_accounts(conn: Connection, account_ids: Collection[int]) -> dict[int, AccountState]:
    """Lock the accounts' rows in id order (the one order every writer uses) and read them."""
    states: dict[int, AccountState] = {}
    columns = (
        accounts.c.id,
        accounts.c.asset,
        accounts.c.flags,
        accounts.c.debits_posted,
        accounts.c.credits_posted,
        accounts.c.debits_pending,
        accounts.c.credits_pending,
    )
    for chunk in _chunks(sorted(account_ids)):
        rows = conn.execute(
            select(*columns)
            .where(accounts.c.id.in_(chunk))
            .order_by(accounts.c.id)
            .with_for_update()
        )
        for r in rows:
            counters = (r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)
            states[r.id] = AccountState(r.id, r.asset, r.flags, *counters, read=counters)
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


def lock_holds(conn: Connection, hold_ids: Collection[int]) -> dict[int, Hold]:
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


def insert_transfers(conn: Connection, rows: Sequence[TransferRow]) -> None:
    if not rows:
        return
    if _is_postgres(conn):
        _pg_insert_transfers(conn, rows)
        return
    conn.execute(
        insert(transfers),
        [
            {
                "id": r.id,
                "group_id": r.group_id,
                "debit_account_id": r.debit_account_id,
                "credit_account_id": r.credit_account_id,
                "asset": r.asset,
                "amount": r.amount,
                "type": r.type,
                "phase": r.phase,
                "pending_id": r.pending_id,
                "reversal_of": r.reversal_of,
                "idempotency_source": r.idempotency_source,
                "idempotency_key": r.idempotency_key,
                "metadata": r.metadata_json,
                "expires_at": r.expires_at,
                "created_at": r.created_at,
                "debit_balance_after": r.debit_balance_after,
                "credit_balance_after": r.credit_balance_after,
                "hash": r.hash,
            }
            for r in rows
        ],
    )


_PG_INSERT_TRANSFERS = """
INSERT INTO ledger_transfers (
    id, group_id, debit_account_id, credit_account_id, asset, amount, type, phase, pending_id,
    reversal_of, idempotency_source, idempotency_key, metadata, expires_at, created_at,
    debit_balance_after, credit_balance_after, hash)
SELECT * FROM unnest(
    %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::varchar[], %s::bigint[],
    %s::varchar[], %s::varchar[], %s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[],
    %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::bigint[], %s::bytea[])
"""


def _pg_insert_transfers(conn: Connection, rows: Sequence[TransferRow]) -> None:
    # One statement for the whole batch: the rows travel as 18 arrays.
    columns: list[list[Any]] = [[] for _ in range(18)]
    for r in rows:
        for column, value in zip(
            columns,
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
            ),
            strict=True,
        ):
            column.append(value)
    conn.exec_driver_sql(_PG_INSERT_TRANSFERS, tuple(columns))


def insert_holds(conn: Connection, rows: Sequence[TransferRow], *, type_of: dict[int, str]) -> None:
    """Register the pending transfers among `rows` as open holds."""
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
    if values:
        conn.execute(insert(holds), values)


def resolve_holds(conn: Connection, resolutions: Sequence[HoldResolution]) -> None:
    if not resolutions:
        return
    statement = (
        update(holds)
        .where(holds.c.id == bindparam("b_id"), holds.c.status == HoldStatus.OPEN.value)
        .values(
            status=bindparam("b_status"),
            resolved_by=bindparam("b_resolved_by"),
            resolved_at=bindparam("b_resolved_at"),
        )
    )
    for resolution in resolutions:
        # Few per batch (holds are resolved one by one by calls and escrows); the rowcount check
        # is the paired assertion that nobody resolved the hold behind our back.
        result = conn.execute(
            statement,
            {
                "b_id": resolution.hold_id,
                "b_status": resolution.status.value,
                "b_resolved_by": resolution.resolved_by,
                "b_resolved_at": resolution.resolved_at,
            },
        )
        assert result.rowcount == 1, f"hold {resolution.hold_id} was not open"


def update_accounts(conn: Connection, states: Sequence[AccountState]) -> None:
    """Write each changed account once, guarded by the counters it was read with."""
    changed = [s for s in states if s.counters() != s.read]
    if not changed:
        return
    if _is_postgres(conn):
        updated = _pg_update_accounts(conn, changed)
    else:
        statement = (
            update(accounts)
            .where(
                and_(
                    accounts.c.id == bindparam("b_id"),
                    accounts.c.debits_posted == bindparam("o_dp"),
                    accounts.c.credits_posted == bindparam("o_cp"),
                    accounts.c.debits_pending == bindparam("o_dpe"),
                    accounts.c.credits_pending == bindparam("o_cpe"),
                )
            )
            .values(
                debits_posted=bindparam("n_dp"),
                credits_posted=bindparam("n_cp"),
                debits_pending=bindparam("n_dpe"),
                credits_pending=bindparam("n_cpe"),
            )
        )
        params = [
            {
                "b_id": s.id,
                "o_dp": s.read[0],
                "o_cp": s.read[1],
                "o_dpe": s.read[2],
                "o_cpe": s.read[3],
                "n_dp": s.debits_posted,
                "n_cp": s.credits_posted,
                "n_dpe": s.debits_pending,
                "n_cpe": s.credits_pending,
            }
            for s in changed
        ]
        updated = 0
        for p in params:
            updated += conn.execute(statement, p).rowcount
    # Paired assertion: every row we decided on was exactly as we read it under the lock.
    assert updated == len(changed), f"updated {updated} of {len(changed)} accounts"


_PG_UPDATE_ACCOUNTS = """
UPDATE ledger_accounts AS a
SET debits_posted = v.n_dp, credits_posted = v.n_cp,
    debits_pending = v.n_dpe, credits_pending = v.n_cpe
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
     AS v(id, o_dp, o_cp, o_dpe, o_cpe, n_dp, n_cp, n_dpe, n_cpe)
WHERE a.id = v.id
  AND a.debits_posted = v.o_dp AND a.credits_posted = v.o_cp
  AND a.debits_pending = v.o_dpe AND a.credits_pending = v.o_cpe
"""


def _pg_update_accounts(conn: Connection, changed: Sequence[AccountState]) -> int:
    result = conn.exec_driver_sql(
        _PG_UPDATE_ACCOUNTS,
        (
            [s.id for s in changed],
            [s.read[0] for s in changed],
            [s.read[1] for s in changed],
            [s.read[2] for s in changed],
            [s.read[3] for s in changed],
            [s.debits_posted for s in changed],
            [s.credits_posted for s in changed],
            [s.debits_pending for s in changed],
            [s.credits_pending for s in changed],
        ),
    )
    return result.rowcount


def update_chain(conn: Connection, head: ChainHead) -> None:
    result = conn.execute(
        update(chain)
        .where(chain.c.id == CHAIN_ROW_ID)
        .values(
            last_transfer_id=head.last_transfer_id,
            last_hash=head.last_hash,
            last_created_at=head.last_created_at,
        )
    )
    assert result.rowcount == 1


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
