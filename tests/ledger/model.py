"""A plain-Python model of the ledger's books, for the property tests.

It is written from the documented rules (DESIGN.md "The ledger", the docstrings of
`ledger/service.py` and `ledger/posting/`), not by calling the ledger, so a test that compares
the two catches a change in either. It predicts every transfer row exactly: ids (gap-free, in
commit order), linked-group ids, balances after, the clamped clock, holds and their resolutions,
expiry rows made by the sweep and on touch, and idempotent replays.

The model's rules, one per line (what the machine in `test_stateful.py` checks):
- a batch's time is `max(now, the time of the last transfer written)`: the books never run back;
- shapes (amounts, types, keys, metadata) are checked before anything is read; the first fault
  of the first bad operation names the error;
- groups are applied in order, each all-or-nothing against the counters left by the ones before;
- a no-overdraft account keeps `credits_posted - debits_posted - debits_pending >= 0` after every
  single operation, not only at the end of its group;
- when that rule refuses a group on an account, the account's holds already past their timeout
  are expired (once per account per batch) and the group is tried again, as long as that frees
  something; those expiries stay in the batch even if the group still fails;
- resolving a hold past its timeout expires it (that expiry stays in the batch) and fails the
  group with HoldExpired;
- a group whose keys were all used before under its source returns what they made if the
  content matches, else IdempotencyConflict; some keys seen and some not is a conflict too;
- a batch that fails in the caller's transaction (`ledger.execute`) is rolled back whole.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from coffer import ledger
from coffer.ledger import Group, PostHold, Reversal, Transfer, TransferRequest, VoidHold
from coffer.ledger.hashing import canonical_json

TYPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]*$")
TIMEOUT_S_MAX = 30 * 24 * 3600
METADATA_BYTES_MAX = 8 * 1024
EXPIRE_ON_TOUCH_MAX = 100
POSTING = ("posted", "post_pending")

# What one transfer row looks like to the tests: every column but the hash (verify() checks
# the hashes; the model predicts everything they cover).
RowKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    group_id: int
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: int
    type: str
    phase: str
    pending_id: int | None
    reversal_of: int | None
    idempotency_source: str
    idempotency_key: str | None
    metadata_json: str
    expires_at: datetime | None
    created_at: datetime
    debit_balance_after: int
    credit_balance_after: int

    def key(self) -> RowKey:
        return (
            self.id,
            self.group_id,
            self.debit_account_id,
            self.credit_account_id,
            self.asset,
            self.amount,
            self.type,
            self.phase,
            self.pending_id,
            self.reversal_of,
            self.idempotency_source,
            self.idempotency_key,
            self.metadata_json,
            self.expires_at,
            self.created_at,
            self.debit_balance_after,
            self.credit_balance_after,
        )


def transfer_key(t: Transfer) -> RowKey:
    """The same tuple as `Row.key`, from a transfer the ledger returned or stored."""
    return (
        t.id,
        t.group_id,
        t.debit_account_id,
        t.credit_account_id,
        t.asset,
        t.amount,
        t.type,
        t.phase.value,
        t.pending_id,
        t.reversal_of,
        t.idempotency_source,
        t.idempotency_key,
        canonical_json(t.metadata),
        t.expires_at,
        t.created_at,
        t.debit_balance_after,
        t.credit_balance_after,
    )


@dataclass(slots=True)
class MAccount:
    id: int
    asset: str
    no_overdraft: bool
    counters: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # dp, cp, dpe, cpe


@dataclass(slots=True)
class MHold:
    id: int
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: int
    type: str
    expires_at: datetime | None
    status: str = "open"
    resolved_by: int | None = None
    resolved_at: datetime | None = None

    def key(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.debit_account_id,
            self.credit_account_id,
            self.asset,
            self.amount,
            self.type,
            self.status,
            self.expires_at,
            self.resolved_by,
            self.resolved_at,
        )


class ModelError(Exception):
    """Carries the ledger error class the model expects, and the account that caused it."""

    def __init__(self, error: type[ledger.LedgerError], account_id: int | None = None) -> None:
        super().__init__(error.__name__)
        self.error = error
        self.account_id = account_id


Outcome = list[Row] | type[ledger.LedgerError]


# ---------------------------------------------------------------------------------------------
# Shapes


def _key_ok(value: object, length_max: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= length_max and value.isprintable()


def _id_ok(value: object) -> bool:
    return type(value) is int and value > 0


def _amount_error(value: object) -> type[ledger.LedgerError] | None:
    if type(value) is not int or value <= 0 or value > ledger.AMOUNT_MAX:
        return ledger.AmountInvalid
    return None


def _type_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 32 and TYPE_RE.match(value) is not None


def _metadata_ok(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, Mapping):
        return False
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError):
        return False
    return len(encoded) <= METADATA_BYTES_MAX


def shape_error(group: Group) -> type[ledger.LedgerError] | None:
    """The error the ledger gives a badly shaped group before it reads anything, else None."""
    bad = ledger.InvalidTransfer
    if not group.operations:
        return bad
    if not _key_ok(group.source, 64):
        return bad
    seen: set[str] = set()
    for op in group.operations:
        if op.idempotency_key is not None:
            if not _key_ok(op.idempotency_key, 255) or op.idempotency_key in seen:
                return bad
            seen.add(op.idempotency_key)
        if isinstance(op, TransferRequest):
            if not (_id_ok(op.debit_account_id) and _id_ok(op.credit_account_id)):
                return bad
            if op.debit_account_id == op.credit_account_id:
                return ledger.SameAccount
            if (error := _amount_error(op.amount)) is not None:
                return error
            if not _type_ok(op.type):
                return bad
            if op.timeout_s is not None and (
                not op.pending
                or type(op.timeout_s) is not int
                or not 0 < op.timeout_s <= TIMEOUT_S_MAX
            ):
                return bad
        elif isinstance(op, PostHold):
            if not _id_ok(op.hold_id):
                return bad
            if op.amount is not None and (error := _amount_error(op.amount)) is not None:
                return error
            if op.type is not None and not _type_ok(op.type):
                return bad
        elif isinstance(op, VoidHold):
            if not _id_ok(op.hold_id):
                return bad
        elif isinstance(op, Reversal):
            if not _id_ok(op.transfer_id):
                return bad
            if op.amount is not None and (error := _amount_error(op.amount)) is not None:
                return error
            if not _type_ok(op.type):
                return bad
        else:
            return bad
        if not _metadata_ok(op.metadata):
            return bad
    return None


# ---------------------------------------------------------------------------------------------
# The books


@dataclass
class Books:
    accounts: dict[int, MAccount] = field(default_factory=dict)
    holds: dict[int, MHold] = field(default_factory=dict)
    transfers: dict[int, Row] = field(default_factory=dict)
    reversed: dict[int, int] = field(default_factory=dict)
    keys: dict[tuple[str, str], Row] = field(default_factory=dict)
    next_id: int = 1
    head_time: datetime | None = None

    def copy(self) -> Books:
        return copy.deepcopy(self)

    def add_account(self, account_id: int, asset: str, *, no_overdraft: bool) -> None:
        if account_id not in self.accounts:
            self.accounts[account_id] = MAccount(account_id, asset, no_overdraft)

    def effective_now(self, now: datetime) -> datetime:
        return now if self.head_time is None or now >= self.head_time else self.head_time

    def begin(self, now: datetime) -> ModelBatch:
        return ModelBatch(self, self.effective_now(now))

    # -- whole calls ------------------------------------------------------------------------

    def run(self, groups: list[Group], now: datetime) -> list[Outcome]:
        """`ledger.execute_many` in one transaction that commits: one outcome per group."""
        batch = self.begin(now)
        outcomes = [batch.apply(group) for group in groups]
        batch.finish()
        return outcomes

    def run_in_session(self, group: Group, now: datetime) -> Outcome:
        """`ledger.execute` (and its wrappers) in a unit of work: an error rolls back everything."""
        before = self.copy()
        (outcome,) = self.run([group], now)
        if not isinstance(outcome, list):
            self.__dict__.update(before.__dict__)
        return outcome

    def sweep(self, now: datetime, limit: int) -> int:
        """`ledger.expire_holds`: expire up to `limit` holds past their timeout."""
        batch = self.begin(now)
        due = sorted(
            (
                h
                for h in self.holds.values()
                if h.status == "open" and h.expires_at is not None and h.expires_at <= batch.now
            ),
            key=lambda h: (h.expires_at, h.id),
        )[:limit]
        for hold in due:
            batch.expire(hold)
        batch.finish()
        return len(due)

    # -- reads ------------------------------------------------------------------------------

    def available(self, account_id: int) -> int:
        dp, cp, dpe, _ = self.accounts[account_id].counters
        return cp - dp - dpe


@dataclass(slots=True)
class _Staged:
    counters: dict[int, list[int]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    holds: list[MHold] = field(default_factory=list)
    resolved: dict[int, tuple[str, int]] = field(default_factory=dict)  # hold -> status, by
    reversed: dict[int, int] = field(default_factory=dict)


class ModelBatch:
    """One `apply_groups` call: a fixed time, and changes merged group by group."""

    def __init__(self, books: Books, now: datetime) -> None:
        self.books = books
        self.now = now
        self.wrote = False
        self.expiry_checked: set[int] = set()

    def finish(self) -> None:
        if self.wrote:
            self.books.head_time = self.now

    # -- groups -----------------------------------------------------------------------------

    def apply(self, group: Group) -> Outcome:
        error = shape_error(group)
        if error is not None:
            return error
        replay = self._replay(group)
        if replay is not None:
            return replay
        while True:
            staged = _Staged()
            try:
                for op in group.operations:
                    self._apply_op(staged, group, op)
            except ModelError as exc:
                failed = exc
            else:
                self._merge(staged)
                return list(staged.rows)
            # Short of funds: release the account's holds past their timeout and try again
            # (each account once per batch, so this ends).
            short_account = failed.account_id if failed.error is ledger.InsufficientFunds else None
            if short_account is not None and self._expire_holds_of(short_account):
                continue
            return failed.error

    def _replay(self, group: Group) -> Outcome | None:
        keyed = [op for op in group.operations if op.idempotency_key is not None]
        seen = [self.books.keys.get((group.source, op.idempotency_key)) for op in keyed]  # type: ignore[arg-type]
        if not any(seen):
            return None
        if len(keyed) != len(group.operations) or not all(seen):
            return ledger.IdempotencyConflict
        rows: list[Row] = []
        for op, earlier in zip(group.operations, seen, strict=True):
            assert earlier is not None
            if not _same_content(op, earlier):
                return ledger.IdempotencyConflict
            rows.append(earlier)
        return rows

    def _merge(self, staged: _Staged) -> None:
        books = self.books
        for account_id, counters in staged.counters.items():
            books.accounts[account_id].counters = counters
        for row in staged.rows:
            books.transfers[row.id] = row
            if row.idempotency_key is not None:
                books.keys[(row.idempotency_source, row.idempotency_key)] = row
        for hold in staged.holds:
            books.holds[hold.id] = hold
        for hold_id, (status, by) in staged.resolved.items():
            hold = books.holds[hold_id]
            hold.status, hold.resolved_by, hold.resolved_at = status, by, self.now
        for original_id, amount in staged.reversed.items():
            books.reversed[original_id] = books.reversed.get(original_id, 0) + amount
        books.next_id += len(staged.rows)
        if staged.rows:
            self.wrote = True

    # -- operations -------------------------------------------------------------------------

    def _apply_op(self, staged: _Staged, group: Group, op: object) -> None:
        if isinstance(op, TransferRequest):
            self._transfer(staged, group, op)
        elif isinstance(op, PostHold | VoidHold):
            self._resolve(staged, group, op)
        else:
            assert isinstance(op, Reversal)
            self._reverse(staged, group, op)

    def _counters(self, staged: _Staged, account_id: int) -> list[int]:
        if account_id not in staged.counters:
            staged.counters[account_id] = list(self.books.accounts[account_id].counters)
        return staged.counters[account_id]

    def _move(
        self, staged: _Staged, debit_id: int, credit_id: int, *, posted: int, pending: int
    ) -> tuple[int, int]:
        debit, credit = self._counters(staged, debit_id), self._counters(staged, credit_id)
        debit[0] += posted
        debit[2] += pending
        credit[1] += posted
        credit[3] += pending
        for account_id, c in ((debit_id, debit), (credit_id, credit)):
            if self.books.accounts[account_id].no_overdraft and c[1] - c[0] - c[2] < 0:
                raise ModelError(ledger.InsufficientFunds, account_id)
            assert min(c) >= 0
        return debit[1] - debit[0], credit[1] - credit[0]

    def _row(self, staged: _Staged, group: Group, op: Any, **values: Any) -> Row:
        row = Row(
            id=self.books.next_id + len(staged.rows),
            group_id=self.books.next_id,
            idempotency_source=group.source,
            idempotency_key=op.idempotency_key,
            metadata_json=canonical_json(op.metadata),
            created_at=self.now,
            **values,
        )
        staged.rows.append(row)
        return row

    def _transfer(self, staged: _Staged, group: Group, op: TransferRequest) -> None:
        accounts = self.books.accounts
        for account_id in (op.debit_account_id, op.credit_account_id):
            if account_id not in accounts:
                raise ModelError(ledger.AccountNotFound)
        asset = accounts[op.debit_account_id].asset
        if accounts[op.credit_account_id].asset != asset:
            raise ModelError(ledger.AssetMismatch)
        posted, pending = (0, op.amount) if op.pending else (op.amount, 0)
        after = self._move(
            staged, op.debit_account_id, op.credit_account_id, posted=posted, pending=pending
        )
        expires_at = None
        if op.pending and op.timeout_s is not None:
            expires_at = self.now + timedelta(seconds=op.timeout_s)
        row = self._row(
            staged, group, op,
            debit_account_id=op.debit_account_id, credit_account_id=op.credit_account_id,
            asset=asset, amount=op.amount, type=op.type,
            phase="pending" if op.pending else "posted", pending_id=None, reversal_of=None,
            expires_at=expires_at, debit_balance_after=after[0], credit_balance_after=after[1],
        )  # fmt: skip
        if op.pending:
            staged.holds.append(
                MHold(
                    row.id,
                    op.debit_account_id,
                    op.credit_account_id,
                    asset,
                    op.amount,
                    op.type,
                    expires_at,
                )
            )

    def _resolve(self, staged: _Staged, group: Group, op: PostHold | VoidHold) -> None:
        hold = self.books.holds.get(op.hold_id)
        if hold is None:
            raise ModelError(ledger.HoldNotFound)
        if hold.status != "open" or hold.id in staged.resolved:
            raise ModelError(ledger.HoldResolved)
        if hold.expires_at is not None and hold.expires_at <= self.now:
            self.expire(hold)
            raise ModelError(ledger.HoldExpired)
        if isinstance(op, PostHold):
            amount = hold.amount if op.amount is None else op.amount
            if amount > hold.amount:
                raise ModelError(ledger.PostExceedsHold)
            after = self._move(
                staged,
                hold.debit_account_id,
                hold.credit_account_id,
                posted=amount,
                pending=-hold.amount,
            )
            phase, type_, status = "post_pending", op.type or hold.type, "posted"
        else:
            amount = hold.amount
            after = self._move(
                staged, hold.debit_account_id, hold.credit_account_id, posted=0, pending=-amount
            )
            phase, type_, status = "void_pending", hold.type, "voided"
        row = self._row(
            staged, group, op,
            debit_account_id=hold.debit_account_id, credit_account_id=hold.credit_account_id,
            asset=hold.asset, amount=amount, type=type_, phase=phase, pending_id=hold.id,
            reversal_of=None, expires_at=None,
            debit_balance_after=after[0], credit_balance_after=after[1],
        )  # fmt: skip
        staged.resolved[hold.id] = (status, row.id)

    def _reverse(self, staged: _Staged, group: Group, op: Reversal) -> None:
        original = self.books.transfers.get(op.transfer_id)
        if original is None:
            raise ModelError(ledger.TransferNotFound)
        if original.phase not in POSTING:
            raise ModelError(ledger.ReversalExceeds)
        remaining = (
            original.amount
            - self.books.reversed.get(original.id, 0)
            - staged.reversed.get(original.id, 0)
        )
        amount = remaining if op.amount is None else op.amount
        if amount <= 0 or amount > remaining:
            raise ModelError(ledger.ReversalExceeds)
        after = self._move(
            staged,
            original.credit_account_id,
            original.debit_account_id,
            posted=amount,
            pending=0,
        )
        self._row(
            staged, group, op,
            debit_account_id=original.credit_account_id,
            credit_account_id=original.debit_account_id,
            asset=original.asset, amount=amount, type=op.type, phase="posted", pending_id=None,
            reversal_of=original.id, expires_at=None,
            debit_balance_after=after[0], credit_balance_after=after[1],
        )  # fmt: skip
        staged.reversed[original.id] = staged.reversed.get(original.id, 0) + amount

    # -- expiry -----------------------------------------------------------------------------

    def expire(self, hold: MHold) -> None:
        """Release an expired hold on its own, straight into the batch."""
        assert hold.status == "open"
        staged = _Staged()
        after = self._move(
            staged, hold.debit_account_id, hold.credit_account_id, posted=0, pending=-hold.amount
        )
        row = Row(
            id=self.books.next_id,
            group_id=self.books.next_id,
            debit_account_id=hold.debit_account_id,
            credit_account_id=hold.credit_account_id,
            asset=hold.asset,
            amount=hold.amount,
            type=hold.type,
            phase="expire_pending",
            pending_id=hold.id,
            reversal_of=None,
            idempotency_source="ledger.expiry",
            idempotency_key=None,
            metadata_json="{}",
            expires_at=None,
            created_at=self.now,
            debit_balance_after=after[0],
            credit_balance_after=after[1],
        )
        staged.rows.append(row)
        staged.resolved[hold.id] = ("expired", row.id)
        self._merge(staged)

    def _expire_holds_of(self, account_id: int) -> bool:
        if account_id in self.expiry_checked:
            return False
        self.expiry_checked.add(account_id)
        due = sorted(
            (
                h
                for h in self.books.holds.values()
                if h.status == "open"
                and h.debit_account_id == account_id
                and h.expires_at is not None
                and h.expires_at <= self.now
            ),
            key=lambda h: (h.expires_at, h.id),
        )[:EXPIRE_ON_TOUCH_MAX]
        for hold in due:
            self.expire(hold)
        return bool(due)


def _same_content(op: object, earlier: Row) -> bool:
    """Whether a replayed operation asks for what its key made before."""
    assert isinstance(op, TransferRequest | PostHold | VoidHold | Reversal)
    if canonical_json(op.metadata) != earlier.metadata_json:
        return False
    if isinstance(op, TransferRequest):
        return (
            earlier.debit_account_id,
            earlier.credit_account_id,
            earlier.amount,
            earlier.type,
            earlier.phase,
            earlier.reversal_of,
        ) == (
            op.debit_account_id,
            op.credit_account_id,
            op.amount,
            op.type,
            "pending" if op.pending else "posted",
            None,
        )
    if isinstance(op, PostHold):
        return (
            earlier.pending_id == op.hold_id
            and earlier.phase == "post_pending"
            and op.amount in (None, earlier.amount)
            and op.type in (None, earlier.type)
        )
    if isinstance(op, VoidHold):
        return earlier.pending_id == op.hold_id and earlier.phase == "void_pending"
    return (
        earlier.reversal_of == op.transfer_id
        and op.amount in (None, earlier.amount)
        and earlier.type == op.type
    )
