"""Database triggers for tests that must see (or break) what the ledger writes, whatever the
code path: the ledger may write through SQLAlchemy or straight through the driver, and a
trigger sees both. Each context manager removes what it made, so later tests never meet it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from sqlalchemy import text

from coffer.db import Database

BOOM_TYPE = "boom"  # a transfer of this type fails inside the database, past every check


@contextlib.contextmanager
def failing_type(db: Database) -> Iterator[None]:
    """Make the database refuse any transfer row of type BOOM_TYPE (a fault no check catches)."""
    if db.dialect == "postgresql":
        make = [
            f"""CREATE FUNCTION coffer_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.type = '{BOOM_TYPE}' THEN
                    RAISE EXCEPTION 'refused by a test trigger';
                END IF;
                RETURN NEW;
            END $$""",
            "CREATE TRIGGER coffer_test_boom BEFORE INSERT ON ledger_transfers"
            " FOR EACH ROW EXECUTE FUNCTION coffer_test_boom()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS coffer_test_boom ON ledger_transfers",
            "DROP FUNCTION IF EXISTS coffer_test_boom()",
        ]
    else:
        make = [
            "CREATE TRIGGER coffer_test_boom BEFORE INSERT ON ledger_transfers"
            f" WHEN NEW.type = '{BOOM_TYPE}'"
            " BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS coffer_test_boom"]
    _run(db, make)
    try:
        yield
    finally:
        _run(db, drop)


class AccountWrites:
    """Counts every UPDATE of a ledger_accounts row, per account id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def counts(self) -> Counter[int]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT account_id FROM coffer_test_account_writes"))
            return Counter(r.account_id for r in rows)

    def clear(self) -> None:
        _run(self.db, ["DELETE FROM coffer_test_account_writes"])


@contextlib.contextmanager
def account_writes(db: Database) -> Iterator[AccountWrites]:
    table = "CREATE TABLE coffer_test_account_writes (account_id BIGINT NOT NULL)"
    if db.dialect == "postgresql":
        make = [
            table,
            """CREATE FUNCTION coffer_test_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO coffer_test_account_writes (account_id) VALUES (NEW.id);
                RETURN NEW;
            END $$""",
            "CREATE TRIGGER coffer_test_count_write AFTER UPDATE ON ledger_accounts"
            " FOR EACH ROW EXECUTE FUNCTION coffer_test_count_write()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS coffer_test_count_write ON ledger_accounts",
            "DROP FUNCTION IF EXISTS coffer_test_count_write()",
            "DROP TABLE IF EXISTS coffer_test_account_writes",
        ]
    else:
        make = [
            table,
            "CREATE TRIGGER coffer_test_count_write AFTER UPDATE ON ledger_accounts"
            " BEGIN INSERT INTO coffer_test_account_writes (account_id) VALUES (NEW.id); END",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS coffer_test_count_write",
            "DROP TABLE IF EXISTS coffer_test_account_writes",
        ]
    _run(db, make)
    try:
        yield AccountWrites(db)
    finally:
        _run(db, drop)


@contextlib.contextmanager
def updates_skipped(db: Database, table: str) -> Iterator[None]:
    """Make the database silently skip every UPDATE of `table`'s rows, so a guarded update
    matches no row: what a row changed behind the writer's back looks like to its check."""
    assert table.isidentifier()
    if db.dialect == "postgresql":
        make = [
            """CREATE FUNCTION coffer_test_skip_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RETURN NULL;
            END $$""",
            f"CREATE TRIGGER coffer_test_skip_update BEFORE UPDATE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION coffer_test_skip_update()",
        ]
        drop = [
            f"DROP TRIGGER IF EXISTS coffer_test_skip_update ON {table}",
            "DROP FUNCTION IF EXISTS coffer_test_skip_update()",
        ]
    else:
        make = [
            f"CREATE TRIGGER coffer_test_skip_update BEFORE UPDATE ON {table}"
            " BEGIN SELECT RAISE(IGNORE); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS coffer_test_skip_update"]
    _run(db, make)
    try:
        yield
    finally:
        _run(db, drop)


def _run(db: Database, statements: list[str]) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
