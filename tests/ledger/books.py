"""Read the whole of the books back, for tests that compare them with a model or a snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text, update

from coffer import ledger
from coffer.db import Database
from coffer.ledger import repository as repo
from coffer.ledger.tables import (
    GENESIS_HASH,
    account_totals,
    accounts,
    assets,
    chain,
    daily_totals,
    holds,
    transfers,
)
from tests.ledger.model import RowKey, transfer_key


def assert_clean(db: Database) -> ledger.VerifyReport:
    """`verify()` finds nothing wrong; returns the report for its counts."""
    with db.snapshot() as session:
        report = ledger.verify(session)
    assert report.ok, report.as_dict()
    return report


@dataclass(frozen=True, slots=True)
class State:
    """Everything a refused request must leave as it was."""

    counters: dict[int, tuple[int, int, int, int]]
    transfer_count: int
    chain_head: tuple[Any, ...]
    holds: tuple[tuple[Any, ...], ...]


def state(db: Database) -> State:
    with db.snapshot() as session:
        conn = session.connection()
        counters = {
            r.id: (r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)
            for r in conn.execute(select(accounts))
        }
        count = conn.execute(select(func.count()).select_from(transfers)).scalar_one()
        head = conn.execute(
            select(chain.c.last_transfer_id, chain.c.last_hash, chain.c.last_created_at)
        ).one()
        held = conn.execute(
            select(holds.c.id, holds.c.status, holds.c.resolved_by).order_by(holds.c.id)
        ).all()
    return State(
        counters,
        count,
        (head.last_transfer_id, bytes(head.last_hash), head.last_created_at),
        tuple(tuple(h) for h in held),
    )


def all_transfers(db: Database) -> list[RowKey]:
    with db.snapshot() as session:
        return [
            transfer_key(repo.transfer_from_row(r))
            for r in repo.stream_transfers(session.connection())
        ]


def transfers_by_key(db: Database, source: str = "ledger") -> dict[str, list[ledger.Transfer]]:
    """Every transfer with an idempotency key under `source`, by key (a list, to catch twins)."""
    found: dict[str, list[ledger.Transfer]] = {}
    with db.snapshot() as session:
        for r in repo.stream_transfers(session.connection()):
            t = repo.transfer_from_row(r)
            if t.idempotency_source == source and t.idempotency_key is not None:
                found.setdefault(t.idempotency_key, []).append(t)
    return found


def asset_sums(db: Database) -> dict[str, tuple[int, int]]:
    """Per asset: the sum of posted balances and of (debits_pending - credits_pending)."""
    with db.snapshot() as session:
        rows = session.connection().execute(
            select(
                accounts.c.asset,
                func.sum(accounts.c.credits_posted - accounts.c.debits_posted),
                func.sum(accounts.c.debits_pending - accounts.c.credits_pending),
            ).group_by(accounts.c.asset)
        )
        return {asset: (int(posted), int(pending)) for asset, posted, pending in rows}


def reset_ledger(db: Database) -> None:
    """Empty the ledger's tables only (a much cheaper reset than the `db` fixture's, for
    property tests that start over many times and touch nothing else).

    Account ids start from 1 again, so an example replayed after others makes the same ids
    (SQLite reuses rowids of an emptied table; PostgreSQL's identity is restarted)."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            ledger_tables = (holds, account_totals, daily_totals, transfers, accounts, assets)
            names = ", ".join(t.name for t in ledger_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            for table in (holds, account_totals, daily_totals, transfers, accounts, assets):
                conn.execute(delete(table))
        conn.execute(
            update(chain).values(last_transfer_id=0, last_hash=GENESIS_HASH, last_created_at=None)
        )
