"""A batch's state: everything read under lock and everything decided so far, with the
counter arithmetic every operation shares and the write that ends the batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection

from coffer.ledger import repository as repo
from coffer.ledger.errors import (
    AccountNotFound,
    ExceedsCredits,
    InsufficientFunds,
    InvariantViolated,
    LedgerError,
    Overflow,
)
from coffer.ledger.hashing import transfer_hash
from coffer.ledger.repository import AccountState, ChainHead, HoldResolution, TransferRow
from coffer.ledger.types import (
    COUNTER_MAX,
    Group,
    Hold,
    Operation,
    Phase,
    PostHold,
    Transfer,
    TransferRequest,
    VoidHold,
)

GroupResult = list[Transfer] | LedgerError


# Within a batch a group's outcome may still be unhashed rows; `apply_groups` finishes them.
StagedResult = list[Transfer | TransferRow] | LedgerError


_NO_OVERDRAFT = 1


_NO_OVERCREDIT = 2


class _Wants(NamedTuple):
    """What a batch refers to: idempotency keys, holds, reversed originals, accounts."""

    keys: set[tuple[str, str]]
    hold_ids: set[int]
    transfer_ids: set[int]
    account_ids: set[int]

    @classmethod
    def of(cls, groups: Sequence[Group]) -> _Wants:
        wants = cls(set(), set(), set(), set())
        keys, hold_ids, transfer_ids, account_ids = wants
        for group in groups:
            for op in group.operations:
                if op.idempotency_key is not None:
                    keys.add((group.source, op.idempotency_key))
                if isinstance(op, TransferRequest):
                    account_ids.add(op.debit_account_id)
                    account_ids.add(op.credit_account_id)
                elif isinstance(op, PostHold | VoidHold):
                    hold_ids.add(op.hold_id)
                else:
                    transfer_ids.add(op.transfer_id)
        return wants


@dataclass(slots=True)
class _Staged:
    """One group's changes, merged into the batch only if the whole group passes."""

    accounts: dict[int, list[int]] = field(default_factory=dict)
    rows: list[TransferRow] = field(default_factory=list)
    hold_types: dict[int, str] = field(default_factory=dict)
    resolutions: list[HoldResolution] = field(default_factory=list)
    reversed: dict[int, int] = field(default_factory=dict)


class _BatchState:
    """Everything read under lock, and everything decided so far in this batch."""

    def __init__(self, conn: Connection, head: ChainHead, now: datetime) -> None:
        self.conn = conn
        self.head = head
        self.now = now
        self.next_id = head.last_transfer_id + 1
        self.accounts: dict[int, AccountState] = {}
        self.holds: dict[int, Hold] = {}
        self.resolved_holds: set[int] = set()
        self.originals: dict[int, Transfer] = {}
        self.reversed: dict[int, int] = {}
        self.by_key: dict[tuple[str, str], Transfer | TransferRow] = {}
        self.rows: list[TransferRow] = []
        self.hold_types: dict[int, str] = {}
        self.resolutions: list[HoldResolution] = []
        self.expiry_checked: set[int] = set()

    def load(self, wants: _Wants) -> None:
        keys, hold_ids, transfer_ids, account_ids = wants
        if keys:
            self.by_key.update(repo.transfers_by_idempotency(self.conn, keys))
        if hold_ids:
            missing = hold_ids.difference(self.holds)
            if missing:
                self.holds.update(repo.lock_holds(self.conn, missing))
            for hold in self.holds.values():
                account_ids.add(hold.debit_account_id)
                account_ids.add(hold.credit_account_id)
        if transfer_ids:
            self.originals.update(repo.get_transfers(self.conn, transfer_ids))
            self.reversed.update(repo.reversed_amounts(self.conn, transfer_ids))
            for original in self.originals.values():
                account_ids.add(original.debit_account_id)
                account_ids.add(original.credit_account_id)
        self.lock_accounts(account_ids)

    def lock_accounts(self, account_ids: set[int]) -> None:
        missing = account_ids.difference(self.accounts)
        if missing:
            self.accounts.update(repo.lock_accounts(self.conn, missing))

    def _merge(self, staged: _Staged) -> None:
        for account_id, counters in staged.accounts.items():
            state = self.accounts[account_id]
            (
                state.debits_posted,
                state.credits_posted,
                state.debits_pending,
                state.credits_pending,
            ) = counters
        self.rows.extend(staged.rows)
        self.hold_types.update(staged.hold_types)
        for resolution in staged.resolutions:
            self.resolved_holds.add(resolution.hold_id)
        self.resolutions.extend(staged.resolutions)
        for original_id, amount in staged.reversed.items():
            self.reversed[original_id] = self.reversed.get(original_id, 0) + amount
        for row in staged.rows:
            if row.idempotency_key is not None:
                self.by_key[(row.idempotency_source, row.idempotency_key)] = row
        self.next_id += len(staged.rows)

    def _counters(self, staged: _Staged, account_id: int) -> list[int]:
        counters = staged.accounts.get(account_id)
        if counters is None:
            state = self.accounts.get(account_id)
            if state is None:
                raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
            counters = [
                state.debits_posted,
                state.credits_posted,
                state.debits_pending,
                state.credits_pending,
            ]
            staged.accounts[account_id] = counters
        return counters

    def _move(
        self,
        staged: _Staged,
        *,
        debit_account_id: int,
        credit_account_id: int,
        posted: int,
        pending: int,
    ) -> tuple[int, int]:
        """Add `posted`/`pending` (either may be negative for a release) to both accounts."""
        debit = self._counters(staged, debit_account_id)
        credit = self._counters(staged, credit_account_id)
        debit[0] += posted
        debit[2] += pending
        credit[1] += posted
        credit[3] += pending
        self._check(debit_account_id, debit)
        self._check(credit_account_id, credit)
        return debit[1] - debit[0], credit[1] - credit[0]

    def _check(self, account_id: int, counters: list[int]) -> None:
        dp, cp, dpe, cpe = counters
        flags = self.accounts[account_id].flags
        if flags & _NO_OVERDRAFT and cp - dp - dpe < 0:
            state = self.accounts[account_id]
            raise InsufficientFunds(
                "insufficient funds",
                account_id=account_id,
                available=state.credits_posted - state.debits_posted - state.debits_pending,
            )
        if flags & _NO_OVERCREDIT and dp - cp - cpe < 0:
            raise ExceedsCredits(
                "the account may not be credited beyond its debits", account_id=account_id
            )
        if max(counters) > COUNTER_MAX:
            raise Overflow("an account counter would overflow", account_id=account_id)
        if min(counters) < 0:
            raise InvariantViolated(f"account {account_id} counters went negative: {counters}")

    def _row(
        self,
        staged: _Staged,
        group: Group,
        op: Operation,
        encoded: str,
        *,
        debit_account_id: int,
        credit_account_id: int,
        asset: str,
        amount: int,
        type_: str,
        phase: Phase,
        balances: tuple[int, int],
        pending_id: int | None = None,
        reversal_of: int | None = None,
        expires_at: datetime | None = None,
    ) -> TransferRow:
        transfer_id = self.next_id + len(staged.rows)
        row = TransferRow(
            id=transfer_id,
            group_id=self.next_id,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            asset=asset,
            amount=amount,
            type=type_,
            phase=phase.value,
            pending_id=pending_id,
            reversal_of=reversal_of,
            idempotency_source=group.source,
            idempotency_key=op.idempotency_key,
            metadata_json=encoded,
            expires_at=expires_at,
            created_at=self.now,
            debit_balance_after=balances[0],
            credit_balance_after=balances[1],
        )
        staged.rows.append(row)
        return row

    def write(self) -> dict[int, Transfer]:
        """Hash and write everything decided; returns the new transfers by id."""
        if not self.rows:
            return {}
        previous = self.head.last_hash
        for row in self.rows:
            row.hash = transfer_hash(
                previous,
                transfer_id=row.id,
                group_id=row.group_id,
                debit_account_id=row.debit_account_id,
                credit_account_id=row.credit_account_id,
                asset=row.asset,
                amount=row.amount,
                type=row.type,
                phase=row.phase,
                pending_id=row.pending_id,
                reversal_of=row.reversal_of,
                idempotency_source=row.idempotency_source,
                idempotency_key=row.idempotency_key,
                metadata_json=row.metadata_json,
                expires_at=row.expires_at,
                created_at=row.created_at,
                debit_balance_after=row.debit_balance_after,
                credit_balance_after=row.credit_balance_after,
            )
            previous = row.hash
        last = self.rows[-1]
        # Paired assertion: the ids run on from the chain head without a gap or a twin.
        if not last.id == self.next_id - 1 == self.head.last_transfer_id + len(self.rows):
            raise InvariantViolated(
                f"transfer ids {self.rows[0].id}..{last.id} do not follow the chain head "
                f"{self.head.last_transfer_id}"
            )
        repo.write_batch(
            self.conn,
            rows=self.rows,
            hold_types=self.hold_types,
            resolutions=self.resolutions,
            states=list(self.accounts.values()),
            head=ChainHead(last.id, last.hash, self.now),
        )
        return {row.id: repo.transfer_from_insert(row) for row in self.rows}
