"""PostgreSQL's fast paths (COPY, `unnest` arrays, pipelines) and SQLite's executemany paths
write the same books.

One fixed script (single transfers, linked groups, holds with timeouts posted in part, voided,
expired by the sweep and on touch, reversals, replays, a batch that uses a hold made earlier in
the same batch, a Batcher batch, amounts near the maximum, unicode metadata, microsecond times)
runs with the same clock on a fresh SQLite file and on PostgreSQL. Every stored column of every
ledger table must then be identical, hashes included, and `verify()` clean on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from coffer import ledger
from coffer.db import Database, migrate
from coffer.ledger import AccountFlags, Group, PostHold, Reversal, TransferRequest, VoidHold
from coffer.ledger.tables import accounts, assets, chain, holds, transfers
from tests.ledger.books import assert_clean
from tests.support import databases

T0 = datetime(2034, 2, 3, 4, 5, 6, 789_012, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def both(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[Database, Database]]:
    if request.config.getoption("--db") != "all":
        pytest.skip("compares SQLite with PostgreSQL: run with --db=all")
    lite = Database.connect(f"sqlite:///{tmp_path / 'agree.db'}")
    pg = Database.connect(postgres_url)
    for database in (lite, pg):
        migrate(database)
        databases.reset(database)
    yield lite, pg
    lite.dispose()
    pg.dispose()


def _script(db: Database) -> list[Any]:
    """The same requests, in the same order, with the same clock; returns every answer."""
    answers: list[Any] = []

    def run(now: datetime, call: Any) -> None:
        try:
            with db.unit_of_work() as s:
                answers.append(call(s))
        except ledger.LedgerError as exc:
            answers.append(type(exc).__name__)

    user = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    with db.unit_of_work() as s:
        ledger.define_asset(s, code="DIAMOND", scale=0, now=T0)
        ledger.define_asset(s, code="INR", scale=2, now=T0)
        a, b, c, mint, fees, rupee, bank = (
            ledger.open_account(
                s,
                asset=asset,
                owner_type=owner_type,
                owner_id=owner_id,
                kind=kind,
                flags=user if owner_type == "user" else AccountFlags.NONE,
                now=T0,
            ).id
            for asset, owner_type, owner_id, kind in (
                ("DIAMOND", "user", "a", "wallet"),
                ("DIAMOND", "user", "b", "wallet"),
                ("DIAMOND", "user", "c", "wallet"),
                ("DIAMOND", "system", "coffer", "issuance"),
                ("DIAMOND", "platform", "coffer", "fees"),
                ("INR", "user", "a", "wallet"),
                ("INR", "provider", "razorpay", "clearing"),
            )
        )
    big = ledger.AMOUNT_MAX

    run(
        at(0),
        lambda s: ledger.transfer(
            s,
            debit_account_id=mint,
            credit_account_id=a,
            amount=1_000,
            type="purchase",
            metadata={"order": "o-1", "note": "caf\u00e9 \u2603 \U0001f48e"},
            idempotency_key="buy-1",
            now=at(0),
        ),
    )
    run(
        at(0.000001),
        lambda s: ledger.transfer(
            s,
            debit_account_id=bank,
            credit_account_id=rupee,
            amount=49_900,
            type="purchase",
            metadata={"nested": {"list": [1, 2.5, None, True], "empty": {}}},
            now=at(0.000001),
        ),
    )
    run(
        at(1),
        lambda s: ledger.transfer(
            s, debit_account_id=mint, credit_account_id=fees, amount=big, type="bonus", now=at(1)
        ),
    )
    run(
        at(1),
        lambda s: ledger.transfer(
            s, debit_account_id=mint, credit_account_id=fees, amount=big, type="bonus", now=at(1)
        ),
    )
    run(
        at(2),
        lambda s: ledger.execute(
            s,
            [
                TransferRequest(a, b, 300, "gift", {"gift": "rose"}, "gift-1"),
                TransferRequest(b, fees, 30, "commission", None, "gift-1/cut"),
            ],
            source="gifts",
            now=at(2),
        ),
    )
    run(
        at(2),
        lambda s: ledger.execute(
            s,
            [
                TransferRequest(a, b, 300, "gift", {"gift": "rose"}, "gift-1"),
                TransferRequest(b, fees, 30, "commission", None, "gift-1/cut"),
            ],
            source="gifts",
            now=at(2),
        ),
    )  # replay
    run(
        at(3),
        lambda s: ledger.create_hold(
            s,
            debit_account_id=a,
            credit_account_id=c,
            amount=200,
            type="call_charge",
            timeout_s=60,
            now=at(3),
        ),
    )
    run(
        at(3.5),
        lambda s: ledger.create_hold(
            s,
            debit_account_id=a,
            credit_account_id=c,
            amount=100,
            type="call_charge",
            timeout_s=5,
            now=at(3.5),
        ),
    )
    run(
        at(4),
        lambda s: ledger.create_hold(
            s, debit_account_id=b, credit_account_id=c, amount=50, type="escrow_hold", now=at(4)
        ),
    )
    run(
        at(5),
        lambda s: ledger.execute(
            s, [PostHold(7, 120, "call_charge.final", {"minutes": 12})], now=at(5)
        ),
    )
    run(at(6), lambda s: ledger.void_hold(s, hold_id=9, metadata={"why": "cancelled"}, now=at(6)))
    run(
        at(7),
        lambda s: ledger.transfer(
            s, debit_account_id=a, credit_account_id=b, amount=10_000, type="gift", now=at(7)
        ),
    )  # short
    # Past the 5 s hold's timeout: a spend that needs its funds releases it on touch.
    run(
        at(20),
        lambda s: ledger.transfer(
            s, debit_account_id=a, credit_account_id=b, amount=580, type="gift", now=at(20)
        ),
    )
    run(
        at(21),
        lambda s: ledger.reverse(s, transfer_id=5, amount=100, metadata={"refund": 1}, now=at(21)),
    )
    run(at(22), lambda s: ledger.reverse(s, transfer_id=5, amount=250, now=at(22)))  # > 200 left
    run(at(23), lambda s: ledger.reverse(s, transfer_id=5, amount=150, now=at(23)))
    run(
        at(24),
        lambda s: ledger.create_hold(
            s,
            debit_account_id=b,
            credit_account_id=c,
            amount=5,
            type="call_charge",
            timeout_s=1,
            now=at(24),
        ),
    )
    run(at(30), lambda s: ledger.expire_holds(s, now=at(30)))
    run(
        at(10),
        lambda s: ledger.transfer(
            s, debit_account_id=mint, credit_account_id=c, amount=7, type="bonus", now=at(10)
        ),
    )  # clamped
    # A batch: good and bad groups, and a hold made and posted within it.
    with db.read() as s:
        next_id = s.connection().execute(select(chain.c.last_transfer_id)).scalar_one() + 1
    answers.append(next_id)
    run(
        at(40),
        lambda s: ledger.execute_many(
            s,
            [
                Group([TransferRequest(c, a, 10, "gift", None, "batch-1")]),
                Group([TransferRequest(b, a, 10**6, "gift")]),
                Group(
                    [
                        TransferRequest(
                            c,
                            b,
                            40,
                            "escrow_hold",
                            {"job": 9},
                            "batch-hold",
                            pending=True,
                            timeout_s=3_600,
                        )
                    ]
                ),
                Group(
                    [PostHold(next_id + 1, 25), TransferRequest(b, fees, 2, "fee")], source="escrow"
                ),
                Group([VoidHold(next_id + 1)]),
                Group([Reversal(next_id, 4)]),
                Group([TransferRequest(c, a, 10, "gift", None, "batch-1")]),
            ],
            now=at(40),
        ),
    )
    # The Batcher, with a fixed clock: three groups in one transaction.
    batcher = ledger.Batcher(db.writer, batch_size_max=3, wait_max_s=1.0, clock=lambda: at(50))
    with batcher:
        futures = [
            batcher.submit([TransferRequest(a, fees, 1, "fee", None, "b-1")]),
            batcher.submit([TransferRequest(a, fees, 10**9, "fee", None, "b-2")]),
            batcher.submit([TransferRequest(fees, c, big, "payout", {"to": "c"}, "b-3")]),
        ]
        for future in futures:
            exc = future.exception(timeout=30)
            answers.append(type(exc).__name__ if exc else future.result())
    assert batcher.stats.batches == 1
    return [_plain(x) for x in answers]


def _plain(answer: Any) -> Any:
    """Answers as comparable values (transfers as tuples; errors as names)."""
    if isinstance(answer, ledger.Transfer):
        return tuple(getattr(answer, name) for name in answer.__slots__)
    if isinstance(answer, list):
        return [_plain(x) for x in answer]
    if isinstance(answer, ledger.LedgerError):
        return type(answer).__name__
    return answer


def _dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored column of every ledger table, in key order, as Python values."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with db.snapshot() as s:
        conn = s.connection()
        for table, key in (
            (assets, assets.c.code),
            (accounts, accounts.c.id),
            (transfers, transfers.c.id),
            (holds, holds.c.id),
            (chain, chain.c.id),
        ):
            rows = conn.execute(select(table).order_by(key)).all()
            found[table.name] = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows
            ]
    return found


def test_sqlite_and_postgresql_write_identical_books(both: tuple[Database, Database]) -> None:
    lite, pg = both
    answers_lite, answers_pg = _script(lite), _script(pg)
    assert answers_lite == answers_pg
    # The script did what it says: replays, refusals, an expiry on touch, a clamped clock.
    assert "InsufficientFunds" in answers_lite and "ReversalExceeds" in answers_lite
    dump_lite, dump_pg = _dump(lite), _dump(pg)
    for table in dump_lite:
        assert dump_lite[table] == dump_pg[table], table
    transfers_lite = dump_lite["ledger_transfers"]
    phases = {row[7] for row in transfers_lite}
    assert phases == {"posted", "pending", "post_pending", "void_pending", "expire_pending"}
    created = [row[14] for row in transfers_lite]
    assert created == sorted(created) and created[-1] == at(50)
    assert any(row[14].microsecond == 789_013 for row in transfers_lite)  # T0 + 1 us
    for database in (lite, pg):
        assert_clean(database)
