"""Group commit: what the Batcher promises beyond being fast.

- a group that fails never sinks the rest of its batch;
- a database error that fails the whole transaction is isolated by retrying group by group;
- a full queue refuses with LedgerBusy instead of growing without bound;
- a hot account's row is written once per batch (counted by a trigger, whatever the code path);
- close() drains what was queued; nothing is accepted after it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

import pytest

from coffer import ledger
from coffer.db import Database
from coffer.ledger import Batcher, PostHold, Reversal, Transfer, TransferRequest
from tests.ledger.books import assert_clean, state, transfers_by_key
from tests.ledger.factories import define_assets, fund, system, wallet
from tests.ledger.triggers import BOOM_TYPE, account_writes, failing_type

T0 = datetime(2033, 5, 1, tzinfo=UTC)


def _result(future: Future[list[Transfer]]) -> list[Transfer] | BaseException:
    exc = future.exception(timeout=30)
    return exc if exc is not None else future.result()


def _one_batch(db: Database, size: int, **kwargs: object) -> Batcher:
    """A batcher that waits until `size` groups are queued, so they share one transaction."""
    return Batcher(db.writer, batch_size_max=size, wait_max_s=1.0, **kwargs)  # type: ignore[arg-type]


def test_failing_groups_do_not_sink_their_batch(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob, carol = wallet(s, "alice"), wallet(s, "bob"), wallet(s, "carol")
        rupees, fees = wallet(s, "alice", asset="INR"), system(s, "fees")
        fund(s, alice, 100)
        gift = ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=10, type="gift", now=T0
        )
        stale = ledger.create_hold(
            s,
            debit_account_id=alice.id,
            credit_account_id=carol.id,
            amount=20,
            type="call_charge",
            timeout_s=60,
            now=T0,
        )
    # alice: 90 posted, 20 of it held by a hold that is past its timeout in the batch's clock.
    groups: list[tuple[str, list[ledger.Operation], str]] = [
        ("good", [TransferRequest(alice.id, bob.id, 30, "gift", None, "g1")], "ok"),
        ("overdraft", [TransferRequest(bob.id, carol.id, 500, "gift")], "InsufficientFunds"),
        ("bad shape", [TransferRequest(alice.id, bob.id, 0, "gift")], "AmountInvalid"),
        ("same account", [TransferRequest(bob.id, bob.id, 1, "gift")], "SameAccount"),
        ("mixed assets", [TransferRequest(alice.id, rupees.id, 1, "gift")], "AssetMismatch"),
        ("unknown", [TransferRequest(alice.id, 10**7, 1, "gift")], "AccountNotFound"),
        (
            "linked, second leg short",
            [
                TransferRequest(bob.id, carol.id, 5, "gift"),
                TransferRequest(carol.id, fees.id, 50, "fee"),
            ],
            "InsufficientFunds",
        ),
        (
            "linked, good",
            [
                TransferRequest(bob.id, carol.id, 5, "gift"),
                TransferRequest(carol.id, fees.id, 2, "fee"),
            ],
            "ok",
        ),
        ("replay of g1", [TransferRequest(alice.id, bob.id, 30, "gift", None, "g1")], "ok"),
        (
            "conflict on g1",
            [TransferRequest(alice.id, bob.id, 31, "gift", None, "g1")],
            "IdempotencyConflict",
        ),
        ("over-reversal", [Reversal(gift.id, 11)], "ReversalExceeds"),
        ("expired hold", [PostHold(stale.id)], "HoldExpired"),
        ("good after all that", [TransferRequest(alice.id, fees.id, 60, "fee")], "ok"),
    ]
    batcher = _one_batch(db, len(groups), clock=lambda: T0 + timedelta(minutes=5))
    with batcher:
        futures = [batcher.submit(ops) for _, ops, _ in groups]
        results = [_result(f) for f in futures]
    assert batcher.stats.batches == 1 and batcher.stats.largest_batch == len(groups)
    assert batcher.stats.retried_batches == 0
    for (name, _, wanted), got in zip(groups, results, strict=True):
        got_name = "ok" if isinstance(got, list) else type(got).__name__
        assert got_name == wanted, f"{name}: {got!r}"
    good, replay = results[0], results[8]
    assert isinstance(good, list) and replay == good  # the replay in the same batch: same rows
    assert len(transfers_by_key(db)["g1"]) == 1
    with db.read() as s:
        # 90 - 30 - 60: the last group could spend alice's held 20 because the stale hold was
        # released when it was touched, and that release committed with the batch even though
        # the group that touched it failed with HoldExpired.
        assert ledger.get_account(s, alice.id).available == 0
        assert ledger.get_hold(s, stale.id).status is ledger.HoldStatus.EXPIRED
        assert ledger.get_account(s, carol.id).balance == 3
    assert_clean(db)


@pytest.mark.parametrize("position", ["first", "middle", "last", "alone"])
def test_a_database_error_is_isolated_by_retrying_one_by_one(db: Database, position: str) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
    good = [[TransferRequest(alice.id, bob.id, n, "gift", None, f"good-{n}")] for n in range(1, 6)]
    boom = [TransferRequest(alice.id, bob.id, 7, BOOM_TYPE, None, "boom")]
    if position == "alone":
        groups = [boom]
    else:
        index = {"first": 0, "middle": 2, "last": len(good)}[position]
        groups = [*good[:index], boom, *good[index:]]
    with failing_type(db):
        batcher = _one_batch(db, len(groups))
        with batcher:
            futures = [batcher.submit(ops) for ops in groups]
            results = [_result(f) for f in futures]
    assert batcher.stats.batches == 1
    assert batcher.stats.retried_batches == (0 if position == "alone" else 1)
    by_key = transfers_by_key(db)
    for ops, got in zip(groups, results, strict=True):
        if ops is boom:
            assert isinstance(got, ledger.LedgerUnavailable), got
            assert got.code == "unavailable" and got.__cause__ is not None
            assert "boom" not in by_key
        else:
            assert isinstance(got, list), got
            assert by_key[got[0].idempotency_key or ""] == got
    with db.read() as s:
        expected = 0 if position == "alone" else sum(range(1, 6))
        assert ledger.get_account(s, bob.id).balance == expected
    assert_clean(db)


def test_a_full_queue_refuses_with_ledger_busy_and_close_drains(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
    batcher = Batcher(db.writer, queue_size_max=3)
    # Not started: nothing takes from the queue, so the fourth submission finds it full.
    queued = [
        batcher.submit(
            [TransferRequest(alice.id, bob.id, 1, "gift", None, f"q{n}")], timeout_s=0.01
        )
        for n in range(3)
    ]
    before = state(db)
    with pytest.raises(ledger.LedgerBusy) as caught:
        batcher.submit([TransferRequest(alice.id, bob.id, 1, "gift", None, "q3")], timeout_s=0.05)
    assert caught.value.code == "unavailable"
    assert state(db) == before
    batcher.start()
    batcher.close()
    assert all(f.done() for f in queued)
    assert [len(f.result()) for f in queued] == [1, 1, 1]
    with pytest.raises(ledger.LedgerUnavailable):
        batcher.submit([TransferRequest(alice.id, bob.id, 1, "gift")])
    assert sorted(transfers_by_key(db)) == ["q0", "q1", "q2"]
    assert_clean(db)


def test_close_drains_everything_queued_by_many_threads(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        users = [wallet(s, f"u{n}") for n in range(4)]
        hot = system(s, "fees")
        for user in users:
            fund(s, user, 10_000)
    batcher = Batcher(db.writer, batch_size_max=16).start()
    futures: list[Future[list[Transfer]]] = []
    lock = threading.Lock()

    def submit_many(thread: int) -> None:
        for i in range(100):
            future = batcher.submit(
                [TransferRequest(users[thread].id, hot.id, 1, "fee", None, f"d{thread}-{i}")]
            )
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=submit_many, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()  # at once: most of the 400 are still queued
    assert len(futures) == 400 and all(f.done() for f in futures)
    assert all(len(f.result()) == 1 for f in futures)
    assert len(transfers_by_key(db)) == 400
    with db.read() as s:
        assert ledger.get_account(s, hot.id).balance == 400
    assert_clean(db)


def test_a_hot_account_is_written_once_per_batch(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        users = [wallet(s, f"u{n}") for n in range(10)]
        hot = system(s, "fees")
        for user in users:
            fund(s, user, 1_000)
    size = 50
    with account_writes(db) as writes:
        batcher = _one_batch(db, size)
        with batcher:
            futures = [
                batcher.submit([TransferRequest(users[n % 10].id, hot.id, 3, "fee")])
                for n in range(size)
            ]
            assert all(isinstance(_result(f), list) for f in futures)
        assert batcher.stats.batches == 1
        counts = writes.counts()
        # 50 transfers, one transaction: the hot row once, each user's row once.
        assert counts[hot.id] == 1
        assert all(counts[u.id] == 1 for u in users)
        assert sum(counts.values()) == 11
        # The same 50 one at a time, each in its own transaction: the hot row 50 times.
        writes.clear()
        for n in range(size):
            with db.unit_of_work() as s:
                ledger.transfer(
                    s,
                    debit_account_id=users[n % 10].id,
                    credit_account_id=hot.id,
                    amount=3,
                    type="fee",
                )
        assert writes.counts()[hot.id] == size
    with db.read() as s:
        assert ledger.get_account(s, hot.id).balance == 300
    assert_clean(db)


def test_a_cancelled_future_is_skipped_and_the_writer_lives_on(db: Database) -> None:
    """A caller may cancel its future while it is queued (asyncio does, when the request that
    waits on it is cancelled): that group is not applied, and the rest of the batch and every
    later batch still get their answers."""
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        fund(s, alice, 100)
    batcher = Batcher(db.writer, batch_size_max=3, wait_max_s=0.2)
    futures = [
        batcher.submit([TransferRequest(alice.id, bob.id, 1, "gift", None, f"c{n}")])
        for n in range(3)
    ]
    assert futures[1].cancel()
    with batcher:
        assert [len(futures[n].result(timeout=10)) for n in (0, 2)] == [1, 1]
        later = batcher.execute([TransferRequest(alice.id, bob.id, 1, "gift", None, "after")])
        assert len(later) == 1
    assert sorted(transfers_by_key(db)) == ["after", "c0", "c2"]
    assert_clean(db)
