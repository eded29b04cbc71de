"""`Database.fetch_async`: one prebuilt SELECT straight over psycopg's async pool on PostgreSQL
(in the thread pool on SQLite), answering what a session answers; its connections read-only
and in UTC; one that died while idle replaced unseen, one that died under it a 503 to retry."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import Select, func, select, text

from coffer import ledger
from coffer.db import Database, engine
from tests.api.harness import Api
from tests.payments.helpers import paid_topup

PID = select(func.pg_backend_pid().label("pid"))
SETTINGS = select(
    func.current_setting("default_transaction_read_only").label("read_only"),
    func.current_setting("TimeZone").label("zone"),
)


def fetch(
    database: Database, statement: Select[Any], params: Mapping[str, str | int] | None = None
) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        try:
            return [dict(row) for row in await database.fetch_async(statement, params or {})]
        finally:
            await database.async_reads.aclose()

    return asyncio.run(main())


def _in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["id"], row["total_type"] or ""))


def test_fetch_async_answers_what_a_session_answers(api: Api) -> None:
    paid_topup(api, "fan")
    made = api.client.put("/users/host", json={"display_name": "Host"}, headers=api.service())
    assert made.status_code == 200, made.text
    sent = api.client.post(
        "/wallet/send-gift", json={"receiver_id": "host", "diamonds": 7}, headers=api.user("fan")
    )
    assert sent.status_code == 201, sent.text
    for owner in ("fan", "host", "nobody"):
        statement, params = ledger.owner_accounts_query(owner_type="user", owner_id=owner)
        with api.database.read() as session:
            expected = [dict(row) for row in session.execute(statement, params).mappings()]
        fetched = fetch(api.database, statement, params)
        assert _in_order(fetched) == _in_order(expected)
        assert bool(fetched) == (owner != "nobody")
        assert all(row["created_at"].tzinfo is UTC for row in fetched)
        balance = ledger.owner_accounts_from_rows(fetched)
        assert balance == ledger.owner_accounts_from_rows(expected)
    host = ledger.owner_accounts_from_rows(
        fetch(api.database, *ledger.owner_accounts_query(owner_type="user", owner_id="host"))
    )
    assert any(t.type == "gift" and t.credits > 0 for t in host.totals)


def _postgresql_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("psycopg's own pool is PostgreSQL's; SQLite reads in the thread pool")


def test_fetch_connections_are_read_only_and_in_utc(database_url: str) -> None:
    _postgresql_only(database_url)
    database = Database.connect(database_url)
    try:
        assert fetch(database, SETTINGS) == [{"read_only": "on", "zone": "UTC"}]
    finally:
        database.dispose()


def _terminate_the_pool(database: Database) -> set[int]:
    """End every backend of the fetch pool (from another connection): their pids."""
    with database.unit_of_work() as session:
        rows = session.execute(
            text(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": engine.FETCH_POOL_NAME},
        )
        return {row.pid for row in rows}


def _pid(rows: Any) -> int:
    (row,) = rows
    return int(row["pid"])


def test_a_fetch_connection_that_died_idle_is_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgresql_only(database_url)
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 0.0)  # every checkout counts as idle
    database = Database.connect(database_url)

    async def main() -> tuple[int, set[int], int]:
        try:
            first = _pid(await database.fetch_async(PID, {}))
            ended = _terminate_the_pool(database)
            # The ping finds each dead one; a fresh connection answers.
            return first, ended, _pid(await database.fetch_async(PID, {}))
        finally:
            await database.async_reads.aclose()

    try:
        first, ended, second = asyncio.run(main())
        assert first in ended and second not in ended
    finally:
        database.dispose()


def test_a_fetch_connection_that_died_in_use_is_a_503_then_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgresql_only(database_url)
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 3_600.0)  # no ping: the query finds out
    database = Database.connect(database_url)

    async def main() -> tuple[int, set[int], int, int]:
        try:
            first = _pid(await database.fetch_async(PID, {}))
            ended = _terminate_the_pool(database)
            refused = 0
            for _ in range(engine.FETCH_POOL_SIZE + 1):  # each dead one refuses once, then goes
                try:
                    return first, ended, _pid(await database.fetch_async(PID, {})), refused
                except ledger.LedgerUnavailable:
                    refused += 1
            raise AssertionError("no fresh connection came")
        finally:
            await database.async_reads.aclose()

    try:
        first, ended, second, refused = asyncio.run(main())
        assert first in ended and second not in ended
        assert 1 <= refused <= len(ended)
    finally:
        database.dispose()
