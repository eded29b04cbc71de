"""Real concurrency: dozens of threads, thousands of transfers, one hot account, thin funds.

Every transfer credits or debits one platform account, and the users it moves money from are
funded too thinly for all of it, so many requests must be refused. Each request carries
idempotency keys, and every reported outcome is then looked up in the books: a success is there
exactly once (as reported), a refusal left no row, no user went below zero, every asset sums to
zero, every account's counters equal its transfers, and `verify()` is clean. Run twice: each
thread in its own unit of work (row locks, BEGIN IMMEDIATE on SQLite), and through the Batcher.

In-session writers queue on the ledger's write lock one commit at a time, so that run costs a
commit's latency per transfer (about 5 ms on PostgreSQL here); raise its size for a longer run:
    COFFER_LEDGER_THREAD_TRANSFERS=8192 .venv/bin/pytest tests/ledger/test_concurrency.py
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from coffer import ledger
from coffer.db import Database
from coffer.ledger import Transfer, TransferRequest
from tests.ledger.books import assert_clean, asset_sums, transfers_by_key
from tests.ledger.factories import define_assets, fund, system, wallet

THREADS = 32
IN_SESSION_TRANSFERS = int(os.environ.get("COFFER_LEDGER_THREAD_TRANSFERS", "2048"))
BATCHER_TRANSFERS = 6_400
USERS = 6
FUNDING = 300  # per user: far less than they will try to spend
AMOUNT_MAX = 25


@dataclass(slots=True)
class Outcome:
    key: str
    operations: tuple[TransferRequest, ...]
    made: list[Transfer] | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Setup:
    users: list[int]
    hot: int
    issuance: int


def _setup(db: Database) -> Setup:
    with db.unit_of_work() as s:
        define_assets(s)
        users = [wallet(s, f"user{n}") for n in range(USERS)]
        hot = system(s, "fees")
        issuance = system(s)
        for user in users:
            fund(s, user, FUNDING)
    return Setup([u.id for u in users], hot.id, issuance.id)


def _operations(rng: random.Random, setup: Setup, key: str) -> tuple[TransferRequest, ...]:
    """A payment into the hot account, a payout from it, or a gift with a commission to it."""
    users, hot = setup.users, setup.hot
    kind = rng.random()
    if kind < 0.45:
        return (
            TransferRequest(rng.choice(users), hot, rng.randint(1, AMOUNT_MAX), "fee", None, key),
        )
    if kind < 0.75:
        return (
            TransferRequest(hot, rng.choice(users), rng.randint(1, AMOUNT_MAX), "bonus", None, key),
        )
    sender, host = rng.sample(users, 2)
    amount = rng.randint(2, AMOUNT_MAX)
    return (
        TransferRequest(sender, host, amount, "gift", None, f"{key}/gift"),
        TransferRequest(host, hot, amount // 2, "commission", None, f"{key}/cut"),
    )


def _keys(outcome: Outcome) -> list[str]:
    return [op.idempotency_key for op in outcome.operations if op.idempotency_key is not None]


def _run(
    setup: Setup,
    transfers_total: int,
    submit: Callable[[tuple[TransferRequest, ...]], list[Transfer]],
) -> list[Outcome]:
    per_thread = transfers_total // THREADS
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> list[Outcome]:
        rng = random.Random(thread)
        done: list[Outcome] = []
        start.wait()
        for i in range(per_thread):
            outcome = Outcome(f"t{thread}-{i}", _operations(rng, setup, f"t{thread}-{i}"))
            try:
                outcome.made = submit(outcome.operations)
            except Exception as exc:
                outcome.error = exc
            done.append(outcome)
        return done

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    return [o for thread in results for o in thread]


def _check(db: Database, setup: Setup, outcomes: Sequence[Outcome]) -> dict[str, int]:
    unexpected = [
        o for o in outcomes if o.error and not isinstance(o.error, ledger.InsufficientFunds)
    ]
    assert not unexpected, f"{len(unexpected)} unexpected errors, e.g. {unexpected[0].error!r}"
    succeeded = [o for o in outcomes if o.made is not None]
    refused = [o for o in outcomes if o.error is not None]
    assert len(succeeded) + len(refused) == len(outcomes)
    # Thin funding: a real share of the requests must have been refused, and most not.
    assert len(refused) > len(outcomes) // 20, (len(refused), len(outcomes))
    assert len(succeeded) > len(outcomes) // 4

    stored = transfers_by_key(db)
    for o in succeeded:
        assert o.made is not None
        for op, made in zip(o.operations, o.made, strict=True):
            rows = stored.get(op.idempotency_key or "", [])
            assert len(rows) == 1, f"{op.idempotency_key}: {len(rows)} rows for one success"
            assert rows[0] == made
            assert (made.debit_account_id, made.credit_account_id, made.amount) == (
                op.debit_account_id,
                op.credit_account_id,
                op.amount,
            )
        assert len({t.group_id for t in o.made}) == 1  # a linked group is one group
    for o in refused:
        assert not any(k in stored for k in _keys(o)), f"{o.key} was refused but left a row"
    reported = sum(len(o.made or []) for o in succeeded)
    assert len(stored) == reported  # nothing in the books that nobody was told about

    # Balances follow from the reported successes alone.
    expected = dict.fromkeys(setup.users, FUNDING)
    expected[setup.hot] = 0
    for o in succeeded:
        for op in o.operations:
            expected[op.debit_account_id] -= op.amount
            expected[op.credit_account_id] += op.amount
    with db.read() as s:
        accounts = ledger.get_accounts(s, [*expected, setup.issuance])
    for account_id, balance in expected.items():
        assert accounts[account_id].balance == balance, account_id
    for user in setup.users:
        assert accounts[user].available >= 0
    assert accounts[setup.issuance].balance == -FUNDING * USERS
    assert asset_sums(db) == {"DIAMOND": (0, 0)}
    report = assert_clean(db)
    assert report.transfers == reported + USERS
    return {"succeeded": len(succeeded), "refused": len(refused)}


def test_threads_each_in_their_own_unit_of_work(db: Database) -> None:
    setup = _setup(db)

    def submit(operations: tuple[TransferRequest, ...]) -> list[Transfer]:
        with db.unit_of_work() as s:
            return ledger.execute(s, operations)

    started = time.monotonic()
    outcomes = _run(setup, IN_SESSION_TRANSFERS, submit)
    elapsed_s = time.monotonic() - started
    counts = _check(db, setup, outcomes)
    print(f"{db.dialect} in-session: {counts} in {elapsed_s:.1f} s")


def test_threads_through_the_batcher(db: Database) -> None:
    setup = _setup(db)
    with ledger.Batcher(db.writer, name="test-batcher") as batcher:

        def submit(operations: tuple[TransferRequest, ...]) -> list[Transfer]:
            return batcher.execute(operations)

        started = time.monotonic()
        outcomes = _run(setup, BATCHER_TRANSFERS, submit)
        elapsed_s = time.monotonic() - started
    stats = batcher.stats
    counts = _check(db, setup, outcomes)
    # Group commit did group: far fewer transactions than requests, none retried.
    assert stats.groups == len(outcomes)
    assert stats.batches < len(outcomes) // 2, stats
    assert stats.retried_batches == 0, stats
    print(f"{db.dialect} batcher: {counts} {stats} in {elapsed_s:.1f} s")
