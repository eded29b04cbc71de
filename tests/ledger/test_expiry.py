"""Holds past their timeout stop reserving funds, even before the sweep reaches them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coffer import ledger
from coffer.db import Database
from coffer.ledger import TransferRequest
from tests.ledger.books import assert_clean
from tests.ledger.factories import define_assets, fund, system, wallet

T0 = datetime(2035, 1, 1, tzinfo=UTC)


def test_a_group_short_on_two_accounts_releases_both_accounts_expired_holds(db: Database) -> None:
    """Expiry on touch frees every short account in the group, not only the first one."""
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob, host = wallet(s, "alice"), wallet(s, "bob"), wallet(s, "host")
        fees = system(s, "fees")
        fund(s, alice, 100)
        fund(s, bob, 100)
        holds = [
            ledger.create_hold(
                s,
                debit_account_id=payer.id,
                credit_account_id=host.id,
                amount=80,
                type="call_charge",
                timeout_s=60,
                now=T0,
            )
            for payer in (alice, bob)
        ]
    later = T0 + timedelta(minutes=5)
    with db.unit_of_work() as s:
        made = ledger.execute(
            s,
            [
                TransferRequest(alice.id, fees.id, 90, "gift"),
                TransferRequest(bob.id, fees.id, 90, "gift"),
            ],
            now=later,
        )
    assert [t.amount for t in made] == [90, 90]
    with db.read() as s:
        for hold in holds:
            assert ledger.get_hold(s, hold.id).status is ledger.HoldStatus.EXPIRED
        assert ledger.get_account(s, alice.id).available == 10
        assert ledger.get_account(s, bob.id).available == 10
    assert_clean(db)


def test_limited_sweep_expires_due_hold_after_resolved_one(db: Database) -> None:
    """The sweep's look-ahead uses the books' time, as the sweep itself does.

    A caller whose clock lags the books (here by an hour) still sweeps at the books' time: the
    batch's time is never before the last transfer written. The look-ahead that spares a
    sweep the write lock used the caller's raw clock, so it saw nothing due and returned 0
    while the sweep proper would have expired the hold.
    """
    with db.unit_of_work() as s:
        define_assets(s)
        alice, host = wallet(s, "alice"), wallet(s, "host")
        fund(s, alice, 100)
        resolved, due = (
            ledger.create_hold(
                s,
                debit_account_id=alice.id,
                credit_account_id=host.id,
                amount=10,
                type="call_charge",
                timeout_s=1,
                now=T0,
            )
            for _ in range(2)
        )
        ledger.void_hold(s, hold_id=resolved.id, now=T0)
    with db.unit_of_work() as s:  # the books move on past the holds' timeout
        fund(s, host, 1)
    with db.unit_of_work() as s:
        ledger.transfer(
            s,
            debit_account_id=host.id,
            credit_account_id=alice.id,
            amount=1,
            type="gift",
            now=T0 + timedelta(seconds=30),
        )
    lagging = T0 + timedelta(seconds=30) - timedelta(hours=1)
    with db.unit_of_work() as s:
        assert ledger.has_expired_holds(s, now=lagging)
        assert ledger.expire_holds(s, now=lagging, limit=2) == 1
    with db.read() as s:
        assert ledger.get_hold(s, resolved.id).status is ledger.HoldStatus.VOIDED
        assert ledger.get_hold(s, due.id).status is ledger.HoldStatus.EXPIRED
        assert ledger.get_account(s, alice.id).available == 101
    assert_clean(db)
