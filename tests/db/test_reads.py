"""The read side of `Database`: read-only autocommit connections on PostgreSQL, reads awaited on
the event loop (`read_async`), and a pooled connection that died while idle replaced unseen."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from coffer.db import Database, engine


def _user_ids(session: object, prefix: str) -> list[str]:
    rows = session.execute(  # type: ignore[attr-defined]
        text("SELECT id FROM users WHERE id LIKE :prefix ORDER BY id"), {"prefix": f"{prefix}%"}
    )
    return [row[0] for row in rows]


def test_read_async_answers_what_read_answers(db: Database) -> None:
    with db.unit_of_work() as session:
        for name in ("a", "b", "c"):
            session.execute(
                text(
                    "INSERT INTO users (id, created_at, updated_at)"
                    " VALUES (:id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": f"reads-{name}"},
            )
    with db.read() as session:
        expected = _user_ids(session, "reads-")

    async def main() -> tuple[list[str], set[str]]:
        threads: set[str] = set()

        def read(session: object, prefix: str) -> list[str]:
            threads.add(threading.current_thread().name)
            return _user_ids(session, prefix)

        found = await db.read_async(read, "reads-")
        await db.async_reads.aclose()
        return found, threads

    found, threads = asyncio.run(main())
    assert found == expected == ["reads-a", "reads-b", "reads-c"]
    if db.dialect == "postgresql":
        # Awaited on the event loop: no worker thread was involved.
        assert threads == {threading.current_thread().name}
    else:
        assert threading.current_thread().name not in threads


def test_read_async_raises_what_the_read_raises(db: Database) -> None:
    def read(_session: object) -> None:
        raise LookupError("nothing here")

    async def main() -> None:
        try:
            await db.read_async(read)
        finally:
            await db.async_reads.aclose()

    with pytest.raises(LookupError, match="nothing here"):
        asyncio.run(main())


def test_a_write_inside_a_read_is_refused_on_postgresql(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite reads roll back instead; there is no read-only mode to ask for")
    with pytest.raises(DBAPIError, match="read-only"), db.read() as session:
        session.execute(
            text("INSERT INTO users (id, created_at, updated_at) VALUES ('x', now(), now())")
        )

    async def main() -> None:
        def write(session: object) -> None:
            session.execute(  # type: ignore[attr-defined]
                text("INSERT INTO users (id, created_at, updated_at) VALUES ('y', now(), now())")
            )

        try:
            await db.read_async(write)
        finally:
            await db.async_reads.aclose()

    with pytest.raises(DBAPIError, match="read-only"):
        asyncio.run(main())
    with db.read() as session:
        assert _user_ids(session, "x") == [] and _user_ids(session, "y") == []


def test_a_connection_that_died_idle_is_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL backend is what can die under a pooled connection")
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 0.0)  # every checkout counts as idle
    database = Database.connect(database_url)
    try:
        with database.read() as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with database.unit_of_work() as session:  # another connection ends that backend
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with database.read() as session:  # the ping finds it dead; a fresh one answers
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        database.dispose()
