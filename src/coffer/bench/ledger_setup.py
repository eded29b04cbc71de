"""The ledger bench's setup: its own accounts (owner ids under `coffer-bench:`, asset `BENCH`,
so it can run against a database that holds other data), their funding, and the untimed history
(`preload`) written before measuring; `ledger.py` runs the measurement."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coffer import ledger
from coffer.db import Database
from coffer.ledger import AccountFlags, PostHold, TransferRequest

ASSET = "BENCH"
OWNER_ID_PREFIX = "coffer-bench"
# Each wallet is topped up to this many units; a run moves at most AMOUNT_MAX per operation,
# so no realistic run can drain one (an insufficient-funds failure would be a real failure).
FUNDING = 10**12
FUNDING_LOW = 10**11
AMOUNT_MAX = 100
# Setup and preload write this many groups per transaction (the same path as a batch).
SETUP_BATCH_MAX = 1_000


@dataclass(frozen=True, slots=True)
class BenchAccounts:
    """The bench's accounts' ids: where funding comes from, the hot account, the wallets."""

    issuance: int
    hot: int
    users: list[int]


def open_accounts(
    database: Database, count: int, *, on_progress: Callable[[int], None]
) -> BenchAccounts:
    """Open (or find) the bench's accounts and top up any wallet that is running low."""
    with database.unit_of_work() as session:
        ledger.define_asset(session, code=ASSET, scale=0)
        issuance = ledger.open_account(
            session, asset=ASSET, owner_type="system", owner_id=OWNER_ID_PREFIX, kind="issuance"
        )
        hot = ledger.open_account(
            session, asset=ASSET, owner_type="platform", owner_id=OWNER_ID_PREFIX, kind="fees"
        )
    users: list[int] = []
    low: list[tuple[int, int]] = []
    for start in range(0, count, SETUP_BATCH_MAX):
        with database.unit_of_work() as session:
            for index in range(start, min(count, start + SETUP_BATCH_MAX)):
                account = ledger.open_account(
                    session,
                    asset=ASSET,
                    owner_type="user",
                    owner_id=f"{OWNER_ID_PREFIX}:{index:08d}",
                    kind="wallet",
                    flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                )
                users.append(account.id)
                if account.available < FUNDING_LOW:
                    low.append((account.id, FUNDING - account.available))
        on_progress(min(count, start + SETUP_BATCH_MAX) - start)
    for start in range(0, len(low), SETUP_BATCH_MAX):
        groups = [
            ledger.Group([TransferRequest(issuance.id, account_id, amount, "bench.funding")])
            for account_id, amount in low[start : start + SETUP_BATCH_MAX]
        ]
        with database.unit_of_work() as session:
            _raise_first(ledger.execute_many(session, groups))
    return BenchAccounts(issuance=issuance.id, hot=hot.id, users=users)


def _raise_first(results: Sequence[ledger.GroupResult]) -> None:
    for result in results:
        if isinstance(result, ledger.LedgerError):
            raise result


def preload(
    database: Database,
    accounts: BenchAccounts,
    *,
    workload: str,
    count: int,
    rng: random.Random,
    on_progress: Callable[[int], None],
) -> None:
    """Write `count` transfers of history shaped like the workload, untimed: for `holds`,
    holds and their postings (two transfers each), so the holds table has a history too."""
    users = accounts.users
    written = 0
    while written < count:
        size = min(SETUP_BATCH_MAX, count - written)
        pending = workload == "holds" and size >= 2
        groups = []
        for _ in range(size // 2 if pending else size):
            debit, credit = rng.sample(users, 2)
            if workload == "hot":
                credit = accounts.hot
            amount = rng.randint(2, AMOUNT_MAX)
            request = TransferRequest(
                debit, credit, amount, "bench.preload", pending=pending, timeout_s=None
            )
            groups.append(ledger.Group([request]))
        with database.unit_of_work() as session:
            results = ledger.execute_many(session, groups)
            _raise_first(results)
        if pending:
            posts = [
                ledger.Group([PostHold(hold_id=made[0].id, amount=made[0].amount // 2)])
                for made in results
                if not isinstance(made, ledger.LedgerError)
            ]
            with database.unit_of_work() as session:
                _raise_first(ledger.execute_many(session, posts))
            size = 2 * len(posts)
        written += size
        on_progress(size)
    if database.dialect == "postgresql":
        # Fresh statistics, so the planner sees the tables as they now are.
        with database.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE ledger_accounts, ledger_transfers, ledger_holds")
            conn.commit()


__all__ = [
    "AMOUNT_MAX",
    "ASSET",
    "FUNDING",
    "FUNDING_LOW",
    "OWNER_ID_PREFIX",
    "SETUP_BATCH_MAX",
    "BenchAccounts",
    "open_accounts",
    "preload",
]
