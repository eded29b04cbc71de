"""Transfers, linked groups, holds and reversals through the in-session API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coffer import ledger
from coffer.db import Database
from coffer.ledger import PostHold, TransferRequest
from tests.ledger.factories import define_assets, fund, system, wallet

T0 = datetime(2030, 1, 1, tzinfo=UTC)  # after the real clock, which the books never run behind


def assert_clean(db: Database) -> None:
    with db.snapshot() as session:
        report = ledger.verify(session)
    assert report.ok, report.as_dict()


def test_transfer_moves_money_and_records_balances(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
        made = ledger.transfer(
            s,
            debit_account_id=alice.id,
            credit_account_id=bob.id,
            amount=30,
            type="gift",
            metadata={"note": "hi"},
        )
    assert made.debit_balance_after == 70 and made.credit_balance_after == 30
    assert made.metadata == {"note": "hi"}
    with db.read() as s:
        assert ledger.get_account(s, alice.id).available == 70
        assert ledger.get_account(s, bob.id).balance == 30
        assert ledger.get_account(s, system(s).id).balance == -100
    assert_clean(db)


def test_overdraft_is_refused_and_writes_nothing(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 10)
    with pytest.raises(ledger.InsufficientFunds) as caught, db.unit_of_work() as s:
        ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=11, type="gift"
        )
    assert caught.value.details["available"] == 10
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 10
        assert ledger.get_account(s, bob.id).balance == 0
    assert_clean(db)


@pytest.mark.parametrize("amount", [0, -5, 1.0, 10.5, True, "10", 2**53, None])
def test_bad_amounts_are_refused(db: Database, amount: object) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
    with pytest.raises(ledger.AmountInvalid), db.unit_of_work() as s:
        ledger.transfer(
            s,
            debit_account_id=alice.id,
            credit_account_id=bob.id,
            amount=amount,
            type="gift",  # type: ignore[arg-type]
        )
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 100
    assert_clean(db)


def test_same_account_unknown_account_and_mixed_assets(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice = wallet(s, "alice")
        rupees = wallet(s, "alice", asset="INR")
        fund(s, alice, 100)
    with pytest.raises(ledger.SameAccount), db.unit_of_work() as s:
        ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=alice.id, amount=1, type="gift"
        )
    with pytest.raises(ledger.AccountNotFound), db.unit_of_work() as s:
        ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=999_999, amount=1, type="gift"
        )
    with pytest.raises(ledger.AssetMismatch), db.unit_of_work() as s:
        ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=rupees.id, amount=1, type="gift"
        )
    assert_clean(db)
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 100


def test_linked_group_is_all_or_nothing(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, host, agency = wallet(s, "alice"), wallet(s, "host"), wallet(s, "agency")
        fund(s, alice, 100)
    with pytest.raises(ledger.InsufficientFunds), db.unit_of_work() as s:
        ledger.execute(
            s,
            [
                TransferRequest(alice.id, host.id, 90, "gift"),
                TransferRequest(alice.id, agency.id, 20, "commission"),
            ],
        )
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 100
        assert ledger.get_account(s, host.id).balance == 0
    with db.unit_of_work() as s:
        made = ledger.execute(
            s,
            [
                TransferRequest(alice.id, host.id, 80, "gift"),
                TransferRequest(host.id, agency.id, 8, "commission"),
            ],
        )
    assert [t.group_id for t in made] == [made[0].id, made[0].id]
    assert made[1].debit_balance_after == 72
    assert_clean(db)


def test_batch_failure_isolated_per_group(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 10)
    with db.unit_of_work() as s:
        results = ledger.execute_many(
            s,
            [
                ledger.Group([TransferRequest(alice.id, bob.id, 6, "gift")]),
                ledger.Group([TransferRequest(alice.id, bob.id, 6, "gift")]),  # now short
                ledger.Group([TransferRequest(alice.id, bob.id, 0, "gift")]),  # bad shape
                ledger.Group([TransferRequest(alice.id, bob.id, 4, "gift")]),
            ],
        )
    assert isinstance(results[0], list)
    assert isinstance(results[1], ledger.InsufficientFunds)
    assert isinstance(results[2], ledger.AmountInvalid)
    assert isinstance(results[3], list)
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 0
        assert ledger.get_account(s, bob.id).balance == 10
    assert_clean(db)


def test_idempotent_replay_and_conflict(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
    kwargs = {"debit_account_id": alice.id, "credit_account_id": bob.id, "type": "gift"}
    with db.unit_of_work() as s:
        first = ledger.transfer(s, amount=10, idempotency_key="k1", **kwargs)
    with db.unit_of_work() as s:
        again = ledger.transfer(s, amount=10, idempotency_key="k1", **kwargs)
    assert again == first
    with pytest.raises(ledger.IdempotencyConflict), db.unit_of_work() as s:
        ledger.transfer(s, amount=11, idempotency_key="k1", **kwargs)
    # The same key under another source is another transfer.
    with db.unit_of_work() as s:
        other = ledger.transfer(s, amount=10, idempotency_key="k1", source="other", **kwargs)
    assert other.id != first.id
    with db.read() as s:
        assert ledger.get_account(s, bob.id).balance == 20
    assert_clean(db)


def test_holds_post_partially_void_and_expire(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        caller, host = wallet(s, "caller"), wallet(s, "host")
        fund(s, caller, 100)
    with db.unit_of_work() as s:
        hold = ledger.create_hold(
            s,
            debit_account_id=caller.id,
            credit_account_id=host.id,
            amount=60,
            type="call_charge",
            timeout_s=300,
            now=T0,
        )
    with db.read() as s:
        a = ledger.get_account(s, caller.id)
        assert (a.balance, a.available, a.debits_pending) == (100, 40, 60)
    with pytest.raises(ledger.InsufficientFunds), db.unit_of_work() as s:
        ledger.transfer(
            s, debit_account_id=caller.id, credit_account_id=host.id, amount=41, type="gift", now=T0
        )
    with pytest.raises(ledger.PostExceedsHold), db.unit_of_work() as s:
        ledger.post_hold(s, hold_id=hold.id, amount=61, now=T0)
    with db.unit_of_work() as s:
        posted = ledger.post_hold(s, hold_id=hold.id, amount=25, now=T0 + timedelta(seconds=10))
    assert posted.phase == ledger.Phase.POST_PENDING and posted.amount == 25
    with pytest.raises(ledger.HoldResolved), db.unit_of_work() as s:
        ledger.void_hold(s, hold_id=hold.id, now=T0)
    with db.read() as s:
        a = ledger.get_account(s, caller.id)
        assert (a.balance, a.available, a.debits_pending) == (75, 75, 0)
        assert ledger.get_hold(s, hold.id).status is ledger.HoldStatus.POSTED

    # A hold that times out cannot be posted. (The release made on touch is part of the
    # caller's transaction, which the error rolls back; the sweep below releases it.)
    with db.unit_of_work() as s:
        late = ledger.create_hold(
            s,
            debit_account_id=caller.id,
            credit_account_id=host.id,
            amount=50,
            type="call_charge",
            timeout_s=60,
            now=T0 + timedelta(seconds=20),
        )
    with pytest.raises(ledger.HoldExpired), db.unit_of_work() as s:
        ledger.post_hold(s, hold_id=late.id, now=T0 + timedelta(seconds=81))
    with db.unit_of_work() as s:
        assert ledger.expire_holds(s, now=T0 + timedelta(seconds=81)) == 1
    with db.read() as s:
        assert ledger.get_hold(s, late.id).status is ledger.HoldStatus.EXPIRED
        assert ledger.get_account(s, caller.id).available == 75

    # Expiry by the sweep, and on touch when funds are short.
    with db.unit_of_work() as s:
        swept = ledger.create_hold(
            s,
            debit_account_id=caller.id,
            credit_account_id=host.id,
            amount=70,
            type="call_charge",
            timeout_s=60,
            now=T0 + timedelta(seconds=100),
        )
    with db.unit_of_work() as s:
        # 75 posted, 70 held, but the hold is past its timeout: the transfer releases it first.
        ledger.transfer(
            s,
            debit_account_id=caller.id,
            credit_account_id=host.id,
            amount=50,
            type="gift",
            now=T0 + timedelta(seconds=200),
        )
    with db.read() as s:
        assert ledger.get_hold(s, swept.id).status is ledger.HoldStatus.EXPIRED
        assert ledger.get_account(s, caller.id).available == 25
    with db.unit_of_work() as s:
        ledger.create_hold(
            s,
            debit_account_id=caller.id,
            credit_account_id=host.id,
            amount=5,
            type="call_charge",
            timeout_s=1,
            now=T0 + timedelta(seconds=300),
        )
    with db.unit_of_work() as s:
        assert ledger.expire_holds(s, now=T0 + timedelta(seconds=302)) == 1
    with db.unit_of_work() as s:
        assert ledger.expire_holds(s, now=T0 + timedelta(seconds=302)) == 0
    assert_clean(db)


def test_post_and_void_in_same_group_as_transfers(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        caller, host, fees = wallet(s, "caller"), wallet(s, "host"), system(s, "fees")
        fund(s, caller, 100)
        hold = ledger.create_hold(
            s, debit_account_id=caller.id, credit_account_id=host.id, amount=40, type="call_charge"
        )
    with db.unit_of_work() as s:
        made = ledger.execute(
            s, [PostHold(hold.id, amount=30), TransferRequest(host.id, fees.id, 6, "fee")]
        )
    assert made[1].debit_balance_after == 24
    assert_clean(db)


def test_reversal_is_a_new_transfer_and_bounded(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
        gift = ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=40, type="gift"
        )
    with db.unit_of_work() as s:
        back = ledger.reverse(s, transfer_id=gift.id, amount=15)
    assert back.reversal_of == gift.id and back.debit_account_id == bob.id
    with pytest.raises(ledger.ReversalExceeds), db.unit_of_work() as s:
        ledger.reverse(s, transfer_id=gift.id, amount=26)
    with db.unit_of_work() as s:
        rest = ledger.reverse(s, transfer_id=gift.id)
    assert rest.amount == 25
    with pytest.raises(ledger.ReversalExceeds), db.unit_of_work() as s:
        ledger.reverse(s, transfer_id=gift.id)
    with pytest.raises(ledger.TransferNotFound), db.unit_of_work() as s:
        ledger.reverse(s, transfer_id=10**9)
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 100
        assert ledger.get_transfer(s, gift.id).amount == 40
    assert_clean(db)


def test_history_pages_and_balance_as_of(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 1000)
    made = []
    for i in range(7):
        with db.unit_of_work() as s:
            made.append(
                ledger.transfer(
                    s,
                    debit_account_id=alice.id,
                    credit_account_id=bob.id,
                    amount=10 + i,
                    type="gift" if i % 2 else "call_charge",
                    now=T0 + timedelta(minutes=i),
                )
            )
    with db.read() as s:
        page = ledger.history(s, account_id=alice.id, limit=3)
        assert [t.id for t in page.transfers] == [m.id for m in reversed(made)][:3]
        page2 = ledger.history(s, account_id=alice.id, limit=3, before_id=page.next_before_id)
        assert [t.id for t in page2.transfers] == [m.id for m in reversed(made)][3:6]
        gifts = ledger.history(s, account_id=bob.id, types=["gift"])
        assert {t.type for t in gifts.transfers} == {"gift"} and len(gifts.transfers) == 3
        ranged = ledger.history(
            s,
            account_id=bob.id,
            created_from=T0 + timedelta(minutes=2),
            created_to=T0 + timedelta(minutes=4),
        )
        assert [t.amount for t in ranged.transfers] == [13, 12]
        assert (
            ledger.balance_at(s, account_id=bob.id, at=T0 + timedelta(minutes=2, seconds=30))
            == 10 + 11 + 12
        )
        assert ledger.balance_at(s, account_id=bob.id, at=T0 - timedelta(days=1)) == 0
    assert_clean(db)


def test_verify_catches_tampering(db: Database) -> None:
    from sqlalchemy import text

    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
        gift = ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=40, type="gift"
        )
    assert_clean(db)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_transfers SET amount = 41 WHERE id = :id"), {"id": gift.id}
        )
    with db.snapshot() as s:
        report = ledger.verify(s)
    failed = {c.number for c in report.checks if not c.ok}
    assert failed == {2, 5}, report.as_dict()
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_transfers SET amount = 40 WHERE id = :id"), {"id": gift.id}
        )
        conn.execute(
            text("UPDATE ledger_accounts SET debits_posted = 0 WHERE id = :id"), {"id": alice.id}
        )
    with db.snapshot() as s:
        report = ledger.verify(s)
    assert {c.number for c in report.checks if not c.ok} == {1, 2}


def test_linked_group_error_names_the_failing_operation(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 10)
    with pytest.raises(ledger.InsufficientFunds) as caught, db.unit_of_work() as s:
        ledger.execute(
            s,
            [
                TransferRequest(alice.id, bob.id, 5, "gift"),
                TransferRequest(alice.id, bob.id, 6, "gift"),
            ],
        )
    assert caught.value.details["operation_index"] == 1
    assert_clean(db)


def test_reversing_a_transfer_made_earlier_in_the_same_group(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 10)
        head = ledger.get_transfer(s, 1).id
    with db.unit_of_work() as s:
        made = ledger.execute(
            s,
            [
                TransferRequest(alice.id, bob.id, 7, "gift"),
                ledger.Reversal(transfer_id=head + 1, amount=3),
            ],
        )
    assert made[1].reversal_of == made[0].id
    with db.read() as s:
        assert ledger.get_account(s, bob.id).balance == 4
    assert_clean(db)


def test_a_hold_replayed_with_another_timeout_conflicts(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 10)
    hold = {
        "debit_account_id": alice.id,
        "credit_account_id": bob.id,
        "amount": 5,
        "type": "call_charge",
        "idempotency_key": "h1",
    }
    with db.unit_of_work() as s:
        first = ledger.create_hold(s, timeout_s=60, **hold)
    with db.unit_of_work() as s:
        assert ledger.create_hold(s, timeout_s=60, **hold) == first
    with pytest.raises(ledger.IdempotencyConflict), db.unit_of_work() as s:
        ledger.create_hold(s, timeout_s=61, **hold)
    with pytest.raises(ledger.IdempotencyConflict), db.unit_of_work() as s:
        ledger.create_hold(s, **hold)
    assert_clean(db)
