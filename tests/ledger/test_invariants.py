"""Checks that guard money survive `python -O` (STYLE.md habit 8).

`python -O` strips every `assert`. The paired checks of the ledger's writes (a guarded UPDATE
touched exactly the rows it was decided for) are `if ...: raise InvariantViolated`, so an
optimised process still refuses to commit books whose rows moved behind its back. The scenario
runs in one `python -O` subprocess against the test database: for each guarded table, a trigger
makes the database skip the UPDATE, and a transfer must raise and commit nothing.
"""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database
from tests.ledger.books import assert_clean, state
from tests.ledger.factories import define_assets, fund, system, wallet
from tests.ledger.triggers import updates_skipped
from tests.support.optimised import run_optimised

MARK = "invariant violated:"


GUARDED = {
    "ledger_accounts": "accounts updated: 0, expected 2",
    "ledger_chain": "chain heads updated: 0, expected 1",
}


def transfer_with_updates_skipped(url: str, debit_account_id: int, credit_account_id: int) -> None:
    """A scenario: for each guarded table, one transfer while its UPDATEs are skipped; print
    what refused each."""
    database = Database.connect(url)
    try:
        for table in GUARDED:
            with updates_skipped(database, table):
                try:
                    with database.unit_of_work() as s:
                        ledger.transfer(
                            s,
                            debit_account_id=debit_account_id,
                            credit_account_id=credit_account_id,
                            amount=5,
                            type="gift",
                        )
                except ledger.InvariantViolated as exc:
                    print(table, MARK, exc)
                else:
                    print(table, "committed")
    finally:
        database.dispose()


def test_guarded_updates_raise_under_python_O(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, fees = wallet(s, "alice"), system(s, "fees")
        fund(s, alice, 100)
    before = state(db)
    printed = run_optimised(db, __name__, "transfer_with_updates_skipped", alice.id, fees.id)
    assert printed.splitlines() == [f"{table} {MARK} {what}" for table, what in GUARDED.items()]
    assert state(db) == before  # rolled back whole: no transfer, no counter, same chain head
    assert_clean(db)
