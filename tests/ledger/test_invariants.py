"""Checks that guard money survive `python -O` (STYLE.md habit 8).

`python -O` strips every `assert`. The paired checks of the ledger's writes (a guarded UPDATE
touched exactly the rows it was decided for) are `if ...: raise InvariantViolated`, so an
optimised process still refuses to commit books whose rows moved behind its back. Each test runs
its scenario in a `python -O` subprocess against the test database, with a trigger that makes the
database skip the guarded UPDATE, and checks that nothing was committed.
"""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database
from tests.ledger.books import assert_clean, state
from tests.ledger.factories import define_assets, fund, system, wallet
from tests.ledger.triggers import updates_skipped
from tests.support.optimised import run_optimised

MARK = "invariant violated:"


def transfer_once(url: str, debit_account_id: int, credit_account_id: int) -> None:
    """A scenario: one transfer; print what refused it."""
    database = Database.connect(url)
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
        print(MARK, exc)
    else:
        print("committed")
    finally:
        database.dispose()


def test_guarded_account_update_raises_under_python_O(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, fees = wallet(s, "alice"), system(s, "fees")
        fund(s, alice, 100)
    before = state(db)
    with updates_skipped(db, "ledger_accounts"):
        printed = run_optimised(db, __name__, "transfer_once", alice.id, fees.id)
    assert printed.startswith(f"{MARK} accounts updated: 0, expected 2"), printed
    assert state(db) == before  # rolled back whole: no transfer, no counter, same chain head
    assert_clean(db)


def test_guarded_chain_head_update_raises_under_python_O(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, fees = wallet(s, "alice"), system(s, "fees")
        fund(s, alice, 100)
    before = state(db)
    with updates_skipped(db, "ledger_chain"):
        printed = run_optimised(db, __name__, "transfer_once", alice.id, fees.id)
    assert printed.startswith(f"{MARK} chain heads updated: 0, expected 1"), printed
    assert state(db) == before
    assert_clean(db)
