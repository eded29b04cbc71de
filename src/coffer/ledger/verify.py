"""Prove the books: recompute everything from the transfers and compare with what is stored.

One pass over the transfers in id order rebuilds every account's counters and running balance,
re-hashes the chain, and tracks open holds; the results are then compared with the account rows,
the holds table and the chain head. Memory grows with accounts and open holds, not transfers.

Run it inside one snapshot (a REPEATABLE READ transaction on PostgreSQL, any read transaction on
SQLite) so concurrent writers cannot make a consistent ledger look broken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.hashing import transfer_hash
from coffer.ledger.tables import GENESIS_HASH
from coffer.ledger.types import AccountFlags, HoldStatus, Phase

PROBLEMS_PER_CHECK_MAX = 20

INVARIANTS = {
    1: "every asset's debits equal its credits",
    2: "every account's counters and running totals equal the sums of its transfers",
    3: "no no-overdraft account is below zero, posted or available",
    4: "every pending amount belongs to a hold that is still open",
    5: "the hash chain is unbroken",
}


@dataclass(slots=True)
class Check:
    number: int
    name: str
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def fail(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_PER_CHECK_MAX:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, object]:
        return {
            "invariant": self.number,
            "name": self.name,
            "ok": self.ok,
            "problem_count": self.problem_count,
            "problems": list(self.problems),
        }


@dataclass(slots=True)
class VerifyReport:
    checks: list[Check]
    transfers: int
    accounts: int
    open_holds: int

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def extend(self, checks: Iterable[Check]) -> None:
        """Add checks made outside the ledger (payments: invariant 6)."""
        self.checks.extend(checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "transfers": self.transfers,
            "accounts": self.accounts,
            "open_holds": self.open_holds,
            "checks": [check.as_dict() for check in self.checks],
        }


def verify(session: Session) -> VerifyReport:
    """Check invariants 1 to 5 of DESIGN.md against the stored books."""
    conn = session.connection()
    checks = {number: Check(number, name) for number, name in INVARIANTS.items()}
    balanced, counters, overdraft, pending, chained = (checks[n] for n in range(1, 6))

    stored: dict[int, tuple[str, int, tuple[int, int, int, int]]] = {}
    for row in repo.stream_accounts(conn):
        stored[row.id] = (
            row.asset,
            row.flags,
            (row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending),
        )
    # Counters as the transfers say they should be: [debits_posted, credits_posted,
    # debits_pending, credits_pending].
    derived: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    open_pending: dict[int, tuple[int, int, int]] = {}  # hold id -> (debit, credit, amount)
    asset_sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    previous_hash, previous_id, count = GENESIS_HASH, 0, 0
    # The running totals as the transfers say they should be.
    account_totals: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    daily_totals: dict[tuple[date, str, str, str], list[int]] = defaultdict(lambda: [0, 0])

    for t in repo.stream_transfers(conn):
        count += 1
        if t.id != previous_id + 1:
            chained.fail(f"transfer ids jump from {previous_id} to {t.id}")
        expected = transfer_hash(
            previous_hash,
            transfer_id=t.id,
            group_id=t.group_id,
            debit_account_id=t.debit_account_id,
            credit_account_id=t.credit_account_id,
            asset=t.asset,
            amount=t.amount,
            type=t.type,
            phase=t.phase,
            pending_id=t.pending_id,
            reversal_of=t.reversal_of,
            idempotency_source=t.idempotency_source,
            idempotency_key=t.idempotency_key,
            metadata_json=t.metadata,
            expires_at=t.expires_at,
            created_at=t.created_at,
            debit_balance_after=t.debit_balance_after,
            credit_balance_after=t.credit_balance_after,
        )
        stored_hash = bytes(t.hash)
        if stored_hash != expected:
            chained.fail(f"transfer {t.id}: hash does not match its content and predecessor")
        previous_hash, previous_id = stored_hash, t.id

        debit, credit = derived[t.debit_account_id], derived[t.credit_account_id]
        out = account_totals[t.debit_account_id, t.type, t.phase]
        out[0] += 1
        out[1] += t.amount
        into = account_totals[t.credit_account_id, t.type, t.phase]
        into[2] += 1
        into[3] += t.amount
        daily = daily_totals[t.created_at.astimezone(UTC).date(), t.asset, t.type, t.phase]
        daily[0] += 1
        daily[1] += t.amount
        for account_id in (t.debit_account_id, t.credit_account_id):
            account = stored.get(account_id)
            if account is None:
                counters.fail(f"transfer {t.id} names unknown account {account_id}")
            elif account[0] != t.asset:
                balanced.fail(f"transfer {t.id} moves {t.asset} on a {account[0]} account")
        phase = t.phase
        if phase == Phase.POSTED:
            debit[0] += t.amount
            credit[1] += t.amount
        elif phase == Phase.PENDING:
            debit[2] += t.amount
            credit[3] += t.amount
            open_pending[t.id] = (t.debit_account_id, t.credit_account_id, t.amount)
        else:
            hold = open_pending.pop(t.pending_id, None)
            if hold is None:
                pending.fail(f"transfer {t.id} resolves {t.pending_id}, which is not an open hold")
            else:
                if hold[:2] != (t.debit_account_id, t.credit_account_id):
                    pending.fail(f"transfer {t.id} resolves hold {t.pending_id} on other accounts")
                debit[2] -= hold[2]
                credit[3] -= hold[2]
                if phase == Phase.POST_PENDING:
                    if t.amount > hold[2]:
                        pending.fail(f"transfer {t.id} posts more than hold {t.pending_id}")
                    debit[0] += t.amount
                    credit[1] += t.amount
        if phase in (Phase.POSTED, Phase.POST_PENDING):
            sums = asset_sums[t.asset]
            sums[0] += t.amount
            sums[1] += t.amount
        for account_id, side, after in (
            (t.debit_account_id, debit, t.debit_balance_after),
            (t.credit_account_id, credit, t.credit_balance_after),
        ):
            if side[1] - side[0] != after:
                counters.fail(
                    f"transfer {t.id}: account {account_id} balance_after {after}, "
                    f"transfers say {side[1] - side[0]}"
                )
            account = stored.get(account_id)
            no_overdraft = account and account[1] & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            if no_overdraft and side[1] - side[0] - side[2] < 0:
                overdraft.fail(f"transfer {t.id} overdrew account {account_id}")

    head = repo.read_chain(conn)
    if count:
        if head is None:
            chained.fail("the chain head is missing")
        elif head.last_transfer_id != previous_id or head.last_hash != previous_hash:
            chained.fail(
                f"the chain head says {head.last_transfer_id}, the transfers end at {previous_id}"
            )
    elif head is not None and head.last_transfer_id != 0:
        chained.fail("the chain head names transfers that are not there")

    posted_by_asset: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account_id, (asset, flags, have) in stored.items():
        totals = posted_by_asset[asset]
        for i in range(4):
            totals[i] += have[i]
        want = tuple(derived[account_id]) if account_id in derived else (0, 0, 0, 0)
        if have != want:
            counters.fail(f"account {account_id}: counters {have}, transfers say {want}")
        below_zero = have[1] - have[0] < 0 or have[1] - have[0] - have[2] < 0
        if flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and below_zero:
            overdraft.fail(f"account {account_id} is below zero: {have}")
        above_zero = have[0] - have[1] < 0 or have[0] - have[1] - have[3] < 0
        if flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and above_zero:
            overdraft.fail(f"account {account_id} is credited beyond its debits: {have}")
    for asset, (dp, cp, dpe, cpe) in sorted(posted_by_asset.items()):
        if dp != cp:
            balanced.fail(f"{asset}: debits posted {dp} != credits posted {cp}")
        if dpe != cpe:
            balanced.fail(f"{asset}: debits pending {dpe} != credits pending {cpe}")
    for asset, (debits, credits) in sorted(asset_sums.items()):
        if debits != credits:  # pragma: no cover - each transfer adds to both
            balanced.fail(f"{asset}: transfers debit {debits} and credit {credits}")

    _compare_totals(conn, counters, account_totals, daily_totals)

    held = {h.id: h for h in repo.open_holds(conn)}
    for hold_id in sorted(set(held) | set(open_pending)):
        open_hold = held.get(hold_id)
        if open_hold is None:
            pending.fail(f"pending transfer {hold_id} is unresolved but its hold is not open")
        elif hold_id not in open_pending:
            pending.fail(f"hold {hold_id} is open but its pending transfer was resolved")
        elif (
            open_hold.debit_account_id,
            open_hold.credit_account_id,
            open_hold.amount,
        ) != open_pending[hold_id]:
            pending.fail(f"hold {hold_id} differs from its pending transfer")
        elif open_hold.status is not HoldStatus.OPEN:  # pragma: no cover - selected as open
            pending.fail(f"hold {hold_id} has status {open_hold.status}")

    return VerifyReport(
        checks=[checks[n] for n in sorted(checks)],
        transfers=count,
        accounts=len(stored),
        open_holds=len(open_pending),
    )


def _compare_totals(
    conn: Connection,
    check: Check,
    account_totals: dict[tuple[int, str, str], list[int]],
    daily_totals: dict[tuple[date, str, str, str], list[int]],
) -> None:
    """Invariant 2 for the running totals: each stored row equals what the transfers add up
    to, and no total the transfers imply is missing."""
    for row in repo.stream_account_totals(conn):
        key = (row.account_id, row.type, row.phase)
        have = [row.debit_count, row.debit_amount, row.credit_count, row.credit_amount]
        want = account_totals.pop(key, [0, 0, 0, 0])
        if have != want:
            check.fail(f"running total {key}: stored {have}, transfers say {want}")
    for key, want in sorted(account_totals.items()):
        check.fail(f"running total {key} is missing: transfers say {want}")
    for row in repo.stream_daily_totals(conn):
        day_key = (row.day, row.asset, row.type, row.phase)
        have = [row.count, row.amount]
        want = daily_totals.pop(day_key, [0, 0])
        if have != want:
            check.fail(f"daily total {day_key}: stored {have}, transfers say {want}")
    for day_key, want in sorted(daily_totals.items()):
        check.fail(f"daily total {day_key} is missing: transfers say {want}")
