"""Units of work through the writer: each settles on its own, and an ambiguous COMMIT is
resolved through the chain head before anyone is answered (issue 7, item 4; issue 8, item 1)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.db import Database
from coffer.ledger import Batcher, Done, Group, TransferRequest, Work
from tests.ledger.books import assert_clean
from tests.ledger.factories import define_assets, fund, wallet


class CommitLandsThenRaises(Batcher):
    """A writer whose next COMMIT reaches the database and then reports a lost connection, the
    way a network failure between the server's acknowledgement and the client would."""

    fail_next = True

    def _commit_transaction(self, transaction: Any) -> None:
        super()._commit_transaction(transaction)
        if self.fail_next:
            self.fail_next = False
            raise OperationalError("COMMIT", {}, ConnectionError("connection lost in COMMIT"))


class CommitNeverLands(Batcher):
    fail_next = True

    def _commit_transaction(self, transaction: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            transaction.rollback()
            raise OperationalError("COMMIT", {}, ConnectionError("connection lost in COMMIT"))
        super()._commit_transaction(transaction)


def _accounts(db: Database) -> tuple[int, int]:
    with db.unit_of_work() as s:
        define_assets(s)
        sender, receiver = wallet(s, "sender"), wallet(s, "receiver")
        fund(s, sender, 100)
        return sender.id, receiver.id


def _balance(db: Database, account_id: int) -> int:
    with db.read() as s:
        return ledger.get_account(s, account_id).balance


def _gift(sender: int, receiver: int) -> Group:
    # No idempotency keys: only the writer's resolution stands between a retry and a double.
    return Group((TransferRequest(sender, receiver, 10, "gift"),))


def _both_in_one_batch(batcher: Batcher, groups: list[Group]) -> list[Future[Any]]:
    return [batcher.submit_work(Work(g)) for g in groups]


def test_commit_that_lands_then_raises_is_answered_once_with_the_truth(db: Database) -> None:
    sender, receiver = _accounts(db)
    batcher = CommitLandsThenRaises(db.writer, batch_size_max=2, wait_max_s=1.0)
    with batcher:
        futures = _both_in_one_batch(batcher, [_gift(sender, receiver), _gift(sender, receiver)])
        answers = [f.result(timeout=30) for f in futures]
    assert all(len(a) == 1 for a in answers)
    assert _balance(db, receiver) == 20  # not 40: nothing was applied twice
    assert batcher.stats.ambiguous_commits == 1
    assert_clean(db)


def test_commit_that_never_landed_is_retried_and_lands_once(db: Database) -> None:
    sender, receiver = _accounts(db)
    batcher = CommitNeverLands(db.writer, batch_size_max=2, wait_max_s=1.0)
    with batcher:
        futures = _both_in_one_batch(batcher, [_gift(sender, receiver), _gift(sender, receiver)])
        answers = [f.result(timeout=30) for f in futures]
    assert all(len(a) == 1 for a in answers)
    assert _balance(db, receiver) == 20
    assert batcher.stats.ambiguous_commits == 1 and batcher.stats.retried_batches == 1
    assert_clean(db)


def test_unit_rows_commit_with_the_transfers_and_a_failing_guard_sinks_nothing(
    db: Database,
) -> None:
    sender, receiver = _accounts(db)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE unit_notes (name VARCHAR(32) PRIMARY KEY, amount INT)"))
    try:

        def unit(name: str, *, refuse: bool = False, amount: int = 10) -> Work:
            def before(session: Session) -> str:
                if refuse:
                    raise LookupError(f"{name} is not in a state to be paid")
                return name

            def after(session: Session, value: str, made: list[ledger.Transfer]) -> int:
                session.execute(
                    text("INSERT INTO unit_notes VALUES (:n, :a)"),
                    {"n": value, "a": made[0].amount},
                )
                return made[0].credit_balance_after

            group = Group((TransferRequest(sender, receiver, amount, "gift"),))
            return Work(group, before=before, after=after)

        batcher = Batcher(db.writer, batch_size_max=4, wait_max_s=1.0)
        with batcher:
            futures = [
                batcher.submit_work(unit("a")),
                batcher.submit_work(unit("b", refuse=True)),
                batcher.submit_work(unit("c", amount=1_000)),  # more than the sender has
                batcher.submit_work(unit("d")),
            ]
            assert futures[0].result(timeout=30) in (10, 20)
            with pytest.raises(LookupError):
                futures[1].result(timeout=30)
            with pytest.raises(ledger.InsufficientFunds):
                futures[2].result(timeout=30)
            assert futures[3].result(timeout=30) in (10, 20)
            assert batcher.stats.batches == 1
            replay = batcher.run(Work(None, before=lambda s: Done("settled already")))
            assert replay == "settled already"
        with db.read() as s:
            notes = dict(s.execute(text("SELECT name, amount FROM unit_notes")).all())
        assert notes == {"a": 10, "d": 10}  # the refused units wrote nothing
        assert _balance(db, receiver) == 20
        assert_clean(db)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE unit_notes"))


def test_an_after_that_fails_rolls_back_only_its_own_unit(db: Database) -> None:
    sender, receiver = _accounts(db)

    def broken(session: Session, value: object, made: list[ledger.Transfer]) -> None:
        raise RuntimeError("a bug in this unit's own rows")

    batcher = Batcher(db.writer, batch_size_max=3, wait_max_s=1.0)
    with batcher:
        good = batcher.submit_work(Work(_gift(sender, receiver)))
        bad = batcher.submit_work(Work(_gift(sender, receiver), after=broken))
        other = batcher.submit_work(Work(_gift(sender, receiver)))
        assert len(good.result(timeout=30)) == 1 and len(other.result(timeout=30)) == 1
        with pytest.raises(RuntimeError):
            bad.result(timeout=30)
    assert _balance(db, receiver) == 20  # the broken unit's transfer was rolled back with it
    assert_clean(db)


def test_units_with_the_same_claim_never_share_a_batch(db: Database) -> None:
    sender, receiver = _accounts(db)
    seen: list[int] = []

    def after(session: Session, value: object, made: list[ledger.Transfer]) -> int:
        seen.append(made[0].id)
        return made[0].id

    batcher = Batcher(db.writer, batch_size_max=3, wait_max_s=0.5)
    with batcher:
        claimed = frozenset({"order:1"})
        futures = [
            batcher.submit_work(Work(_gift(sender, receiver), after=after, claims=claimed))
            for _ in range(3)
        ]
        for f in futures:
            f.result(timeout=30)
        assert batcher.stats.batches == 3
    assert _balance(db, receiver) == 30
