"""The one place where the books change: apply linked groups of operations in one transaction.

Both the in-session calls (`ledger.transfer(session, ...)`) and group commit (`batch.py`) come
here, so there is exactly one implementation of the rules.

How a batch is applied:
1. Shapes are checked first (amounts, types, keys); a bad group fails alone and reads nothing.
2. The chain head is locked. Every writer takes it first, so writers are totally ordered: ids are
   gap-free, time never runs backwards, and the account locks taken next never deadlock.
3. Everything the batch refers to is read at once: idempotency keys, holds, reversed originals,
   and the accounts, locked in id order.
4. Groups are evaluated in order against in-memory copies of the counters. A group's changes
   are staged and merged only if every operation in it passes; a failing group leaves no trace
   and sinks nothing else.
5. The survivors are written with one statement per table; each account once, guarded by the
   counters it was read with, and the database's CHECKs repeat the no-overdraft rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection

from coffer.ledger import repository as repo
from coffer.ledger.errors import (
    AccountNotFound,
    AmountInvalid,
    AssetMismatch,
    ExceedsCredits,
    HoldExpired,
    HoldNotFound,
    HoldResolved,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidTransfer,
    InvariantViolated,
    LedgerError,
    Overflow,
    PostExceedsHold,
    ReversalExceeds,
    SameAccount,
    TransferNotFound,
)
from coffer.ledger.hashing import canonical_json, transfer_hash
from coffer.ledger.repository import AccountState, ChainHead, HoldResolution, TransferRow
from coffer.ledger.types import (
    AMOUNT_MAX,
    COUNTER_MAX,
    HOLD_TIMEOUT_S_MAX,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    IDEMPOTENCY_SOURCE_LENGTH_MAX,
    METADATA_BYTES_MAX,
    POSTING_PHASES,
    TYPE_LENGTH_MAX,
    Group,
    Hold,
    HoldStatus,
    Operation,
    Phase,
    PostHold,
    Reversal,
    Transfer,
    TransferRequest,
    VoidHold,
)

GroupResult = list[Transfer] | LedgerError
# Within a batch a group's outcome may still be unhashed rows; `apply_groups` finishes them.
StagedResult = list[Transfer | TransferRow] | LedgerError

# \Z, not $: `$` also matches before a trailing newline, which would let "gift\n" through.
_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]*\Z")
_NO_OVERDRAFT = 1
_NO_OVERCREDIT = 2
# Expiry on touch releases at most this many holds of one account per batch; the sweep, the rest.
_EXPIRE_ON_TOUCH_MAX = 100
# Types and sources already found valid: a batch names the same few thousands of times, and
# checking a string is pure (a set lookup instead of a regex). Bounded: once full, no more adds.
_VALID_STRINGS_MAX = 4_096
_valid_types: set[str] = set()
_valid_sources: set[str] = set()


# ---------------------------------------------------------------------------------------------
# Shape checks: no database needed


def check_amount(amount: object, *, what: str = "amount") -> int:
    # bool is an int in Python; True is not one paisa.
    if type(amount) is not int:
        raise AmountInvalid(f"{what} must be an integer count of minor units", field=what)
    if amount <= 0:
        raise AmountInvalid(f"{what} must be positive", field=what, value=amount)
    if amount > AMOUNT_MAX:
        raise AmountInvalid(f"{what} exceeds the maximum of {AMOUNT_MAX}", field=what, value=amount)
    return amount


def _check_type(value: object) -> str:
    if type(value) is str and value in _valid_types:
        return value
    if not isinstance(value, str) or not 0 < len(value) <= TYPE_LENGTH_MAX:
        raise InvalidTransfer(f"type must be 1 to {TYPE_LENGTH_MAX} characters", field="type")
    if _TYPE_PATTERN.match(value) is None:
        raise InvalidTransfer("type must be lower-case letters, digits, _ . : -", field="type")
    if type(value) is str and len(_valid_types) < _VALID_STRINGS_MAX:
        _valid_types.add(value)
    return value


def _check_key(value: object, *, what: str, length_max: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= length_max:
        raise InvalidTransfer(f"{what} must be 1 to {length_max} characters", field=what)
    if not value.isprintable():
        raise InvalidTransfer(f"{what} must be printable text", field=what)
    return value


def _metadata_json(metadata: Mapping[str, Any] | None) -> str:
    if metadata is None:
        return "{}"  # canonical_json(None), without the call
    if not isinstance(metadata, Mapping):
        raise InvalidTransfer("metadata must be an object", field="metadata")
    try:
        encoded = canonical_json(metadata)
    except (TypeError, ValueError) as exc:
        raise InvalidTransfer("metadata must be JSON-serialisable", field="metadata") from exc
    if len(encoded) > METADATA_BYTES_MAX:
        raise InvalidTransfer(
            f"metadata exceeds {METADATA_BYTES_MAX} bytes", field="metadata", size=len(encoded)
        )
    return encoded


def _check_id(value: object, *, what: str) -> int:
    if type(value) is not int or value <= 0:
        raise InvalidTransfer(f"{what} must be a positive integer id", field=what)
    return value


def check_group(group: Group) -> list[str]:
    """Validate a group's shape; returns each operation's canonical metadata JSON."""
    operations = group.operations
    if not (type(operations) is tuple or isinstance(operations, Sequence)) or not operations:
        raise InvalidTransfer("a group needs at least one operation")
    source = group.source
    if not (type(source) is str and source in _valid_sources):
        _check_key(source, what="idempotency_source", length_max=IDEMPOTENCY_SOURCE_LENGTH_MAX)
        if type(source) is str and len(_valid_sources) < _VALID_STRINGS_MAX:
            _valid_sources.add(source)
    encoded: list[str] = []
    keys: set[str] = set()
    for op in group.operations:
        if not isinstance(op, TransferRequest | PostHold | VoidHold | Reversal):
            raise InvalidTransfer(f"unknown operation {type(op).__name__}")
        if op.idempotency_key is not None:
            key = _check_key(
                op.idempotency_key, what="idempotency_key", length_max=IDEMPOTENCY_KEY_LENGTH_MAX
            )
            if key in keys:
                raise InvalidTransfer("an idempotency key appears twice in one group", key=key)
            keys.add(key)
        if isinstance(op, TransferRequest):
            _check_id(op.debit_account_id, what="debit_account_id")
            _check_id(op.credit_account_id, what="credit_account_id")
            if op.debit_account_id == op.credit_account_id:
                raise SameAccount(
                    "debit and credit account must differ", account_id=op.debit_account_id
                )
            check_amount(op.amount)
            _check_type(op.type)
            if op.pending:
                if op.timeout_s is not None and (
                    type(op.timeout_s) is not int or not 0 < op.timeout_s <= HOLD_TIMEOUT_S_MAX
                ):
                    raise InvalidTransfer(
                        f"timeout_s must be 1 to {HOLD_TIMEOUT_S_MAX} seconds", field="timeout_s"
                    )
            elif op.timeout_s is not None:
                raise InvalidTransfer("timeout_s applies to pending transfers only")
        elif isinstance(op, PostHold):
            _check_id(op.hold_id, what="hold_id")
            if op.amount is not None:
                check_amount(op.amount)
            if op.type is not None:
                _check_type(op.type)
        elif isinstance(op, VoidHold):
            _check_id(op.hold_id, what="hold_id")
        elif isinstance(op, Reversal):
            _check_id(op.transfer_id, what="transfer_id")
            if op.amount is not None:
                check_amount(op.amount)
            _check_type(op.type)
        else:
            raise InvalidTransfer(f"unknown operation {type(op).__name__}")
        encoded.append(_metadata_json(op.metadata))
    return encoded


# ---------------------------------------------------------------------------------------------
# Evaluation


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


class _Batch:
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

    # -- reads ------------------------------------------------------------------------------

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

    # -- evaluation -------------------------------------------------------------------------

    def apply_group(self, group: Group, metadata_json: list[str]) -> StagedResult:
        replay = self._replay(group, metadata_json)
        if replay is not None:
            return replay
        while True:
            staged = _Staged()
            index = 0  # the operation being applied, named in the error if it fails
            try:
                for op, encoded in zip(group.operations, metadata_json, strict=True):
                    self._apply_op(staged, group, op, encoded)
                    index += 1
            except InsufficientFunds as exc:
                # Expiry on touch: holds past their timeout still reserve funds until something
                # releases them. Release this account's, then try the group again. Each account
                # is released at most once per batch, so this ends: a group short on two
                # accounts gets both released, not only the first.
                account_id = exc.details.get("account_id")
                if not isinstance(account_id, int):
                    return _in_group(exc, group, index)
                if not self._expire_holds_of(account_id):
                    return _in_group(exc, group, index)
                continue
            except LedgerError as exc:
                return _in_group(exc, group, index)
            self._merge(staged)
            return list(staged.rows)

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

    def _replay(self, group: Group, metadata_json: list[str]) -> StagedResult | None:
        """A group whose keys were seen before returns what they made, or conflicts."""
        if not self.by_key:
            return None  # no key in this batch was made before, nor yet in it
        seen = [
            self.by_key.get((group.source, op.idempotency_key))
            for op in group.operations
            if op.idempotency_key is not None
        ]
        if not any(seen):
            return None
        if len(seen) != len(group.operations) or not all(seen):
            return IdempotencyConflict(
                "some operations of this group were made before under the same keys, some not",
                source=group.source,
            )
        previous: list[Transfer | TransferRow] = []
        for op, encoded, earlier in zip(group.operations, metadata_json, seen, strict=True):
            assert earlier is not None
            if not _same_content(op, encoded, earlier):
                return IdempotencyConflict(
                    "this idempotency key was used before with different content",
                    idempotency_key=op.idempotency_key,
                    transfer_id=earlier.id,
                )
            previous.append(earlier)
        return previous

    def _apply_op(self, staged: _Staged, group: Group, op: Operation, encoded: str) -> None:
        if isinstance(op, TransferRequest):
            self._transfer(staged, group, op, encoded)
        elif isinstance(op, PostHold | VoidHold):
            self._resolve(staged, group, op, encoded)
        else:
            self._reverse(staged, group, op, encoded)

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

    def _transfer(self, staged: _Staged, group: Group, op: TransferRequest, encoded: str) -> None:
        debit = self.accounts.get(op.debit_account_id)
        credit = self.accounts.get(op.credit_account_id)
        for account_id, state in ((op.debit_account_id, debit), (op.credit_account_id, credit)):
            if state is None:
                raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
        assert debit is not None and credit is not None
        if debit.asset != credit.asset:
            raise AssetMismatch(
                "the accounts hold different assets",
                debit_asset=debit.asset,
                credit_asset=credit.asset,
            )
        if op.pending:
            balances = self._move(
                staged,
                debit_account_id=op.debit_account_id,
                credit_account_id=op.credit_account_id,
                posted=0,
                pending=op.amount,
            )
            expires_at = (
                None if op.timeout_s is None else self.now + timedelta(seconds=op.timeout_s)
            )
            row = self._row(
                staged, group, op, encoded,
                debit_account_id=op.debit_account_id,
                credit_account_id=op.credit_account_id,
                asset=debit.asset, amount=op.amount, type_=op.type, phase=Phase.PENDING,
                balances=balances, expires_at=expires_at,
            )  # fmt: skip
            staged.hold_types[row.id] = op.type
        else:
            balances = self._move(
                staged,
                debit_account_id=op.debit_account_id,
                credit_account_id=op.credit_account_id,
                posted=op.amount,
                pending=0,
            )
            self._row(
                staged, group, op, encoded,
                debit_account_id=op.debit_account_id,
                credit_account_id=op.credit_account_id,
                asset=debit.asset, amount=op.amount, type_=op.type, phase=Phase.POSTED,
                balances=balances,
            )  # fmt: skip

    def _hold(self, staged: _Staged, hold_id: int) -> Hold:
        hold = self.holds.get(hold_id)
        if hold is None:
            # A hold made earlier in this same batch is not in the table yet.
            for row in self.rows + staged.rows:
                if row.id == hold_id and row.phase == Phase.PENDING.value:
                    hold = Hold(
                        id=row.id,
                        debit_account_id=row.debit_account_id,
                        credit_account_id=row.credit_account_id,
                        asset=row.asset,
                        amount=row.amount,
                        type=self.hold_types.get(row.id) or staged.hold_types[row.id],
                        status=HoldStatus.OPEN,
                        expires_at=row.expires_at,
                        resolved_by=None,
                        resolved_at=None,
                    )
                    break
        if hold is None:
            raise HoldNotFound(f"hold {hold_id} does not exist", hold_id=hold_id)
        resolved_here = hold_id in self.resolved_holds or any(
            r.hold_id == hold_id for r in staged.resolutions
        )
        if hold.status is not HoldStatus.OPEN or resolved_here:
            raise HoldResolved(
                f"hold {hold_id} is already resolved", hold_id=hold_id, status=hold.status.value
            )
        return hold

    def _resolve(
        self, staged: _Staged, group: Group, op: PostHold | VoidHold, encoded: str
    ) -> None:
        hold = self._hold(staged, op.hold_id)
        if hold.expires_at is not None and hold.expires_at <= self.now:
            self._expire(hold)
            raise HoldExpired(f"hold {hold.id} expired", hold_id=hold.id)
        if isinstance(op, PostHold):
            amount = hold.amount if op.amount is None else op.amount
            if amount > hold.amount:
                raise PostExceedsHold(
                    "cannot post more than the hold", hold_id=hold.id, pending=hold.amount,
                    amount=amount,
                )  # fmt: skip
            balances = self._move(
                staged,
                debit_account_id=hold.debit_account_id,
                credit_account_id=hold.credit_account_id,
                posted=amount,
                pending=-hold.amount,
            )
            row = self._row(
                staged, group, op, encoded,
                debit_account_id=hold.debit_account_id,
                credit_account_id=hold.credit_account_id,
                asset=hold.asset, amount=amount, type_=op.type or hold.type,
                phase=Phase.POST_PENDING, balances=balances, pending_id=hold.id,
            )  # fmt: skip
            status = HoldStatus.POSTED
        else:
            balances = self._move(
                staged,
                debit_account_id=hold.debit_account_id,
                credit_account_id=hold.credit_account_id,
                posted=0,
                pending=-hold.amount,
            )
            row = self._row(
                staged, group, op, encoded,
                debit_account_id=hold.debit_account_id,
                credit_account_id=hold.credit_account_id,
                asset=hold.asset, amount=hold.amount, type_=hold.type,
                phase=Phase.VOID_PENDING, balances=balances, pending_id=hold.id,
            )  # fmt: skip
            status = HoldStatus.VOIDED
        staged.resolutions.append(HoldResolution(hold.id, status, row.id, self.now))

    def _reverse(self, staged: _Staged, group: Group, op: Reversal, encoded: str) -> None:
        original = self.originals.get(op.transfer_id)
        if original is None:
            # Made earlier in this batch, or earlier in this very group.
            for row in (*self.rows, *staged.rows):
                if row.id == op.transfer_id:
                    original = repo.transfer_from_insert(row)
                    break
        if original is None:
            raise TransferNotFound(
                f"transfer {op.transfer_id} does not exist", transfer_id=op.transfer_id
            )
        if original.phase not in POSTING_PHASES:
            raise ReversalExceeds(
                "only posted transfers can be reversed; void a hold instead",
                transfer_id=original.id,
                phase=original.phase.value,
            )
        already = self.reversed.get(original.id, 0) + staged.reversed.get(original.id, 0)
        remaining = original.amount - already
        amount = remaining if op.amount is None else op.amount
        if amount <= 0 or amount > remaining:
            raise ReversalExceeds(
                "cannot reverse more than what is left of the transfer",
                transfer_id=original.id,
                remaining=remaining,
            )
        balances = self._move(
            staged,
            debit_account_id=original.credit_account_id,
            credit_account_id=original.debit_account_id,
            posted=amount,
            pending=0,
        )
        self._row(
            staged, group, op, encoded,
            debit_account_id=original.credit_account_id,
            credit_account_id=original.debit_account_id,
            asset=original.asset, amount=amount, type_=op.type, phase=Phase.POSTED,
            balances=balances, reversal_of=original.id,
        )  # fmt: skip
        staged.reversed[original.id] = staged.reversed.get(original.id, 0) + amount

    # -- expiry -----------------------------------------------------------------------------

    def _expire(self, hold: Hold) -> None:
        """Release an expired hold in this batch, on its own (it commits even if the caller's
        group fails)."""
        if hold.id in self.resolved_holds:
            return
        self.lock_accounts({hold.debit_account_id, hold.credit_account_id})
        staged = _Staged()
        balances = self._move(
            staged,
            debit_account_id=hold.debit_account_id,
            credit_account_id=hold.credit_account_id,
            posted=0,
            pending=-hold.amount,
        )
        row = TransferRow(
            id=self.next_id,
            group_id=self.next_id,
            debit_account_id=hold.debit_account_id,
            credit_account_id=hold.credit_account_id,
            asset=hold.asset,
            amount=hold.amount,
            type=hold.type,
            phase=Phase.EXPIRE_PENDING.value,
            pending_id=hold.id,
            reversal_of=None,
            idempotency_source="ledger.expiry",
            idempotency_key=None,
            metadata_json="{}",
            expires_at=None,
            created_at=self.now,
            debit_balance_after=balances[0],
            credit_balance_after=balances[1],
        )
        staged.rows.append(row)
        staged.resolutions.append(HoldResolution(hold.id, HoldStatus.EXPIRED, row.id, self.now))
        self._merge(staged)

    def _expire_holds_of(self, account_id: int) -> bool:
        if account_id in self.expiry_checked:
            return False
        self.expiry_checked.add(account_id)
        expired = repo.expired_open_holds(
            self.conn, now=self.now, limit=_EXPIRE_ON_TOUCH_MAX, debit_account_id=account_id
        )
        expired = [h for h in expired if h.id not in self.resolved_holds]
        if not expired:
            return False
        self.holds.update(repo.lock_holds(self.conn, {h.id for h in expired}))
        for hold in expired:
            self._expire(self.holds[hold.id])
        return True

    def expire_due(self, *, limit: int) -> int:
        due = repo.expired_open_holds(self.conn, now=self.now, limit=limit)
        if not due:
            return 0
        self.holds.update(repo.lock_holds(self.conn, {h.id for h in due}))
        count = 0
        for hold in due:
            current = self.holds[hold.id]
            if current.status is HoldStatus.OPEN and current.id not in self.resolved_holds:
                self._expire(current)
                count += 1
        return count

    # -- writes -----------------------------------------------------------------------------

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


def _in_group(exc: LedgerError, group: Group, index: int) -> LedgerError:
    """Say which operation of a linked group refused it (the whole group was refused)."""
    if len(group.operations) > 1:
        exc.details.setdefault("operation_index", index)
    return exc


def _timeout_of(made: Transfer | TransferRow) -> int | None:
    if made.expires_at is None:
        return None
    return int((made.expires_at - made.created_at).total_seconds())


def _same_content(op: Operation, encoded: str, earlier: Transfer | TransferRow) -> bool:
    metadata_json = (
        earlier.metadata_json
        if isinstance(earlier, TransferRow)
        else canonical_json(earlier.metadata)
    )
    if metadata_json != encoded:
        return False
    if isinstance(op, TransferRequest):
        phase = Phase.PENDING.value if op.pending else Phase.POSTED.value
        return (
            earlier.debit_account_id == op.debit_account_id
            and earlier.credit_account_id == op.credit_account_id
            and earlier.amount == op.amount
            and earlier.type == op.type
            and str(earlier.phase) == phase
            and earlier.reversal_of is None
            and _timeout_of(earlier) == (op.timeout_s if op.pending else None)
        )
    if isinstance(op, PostHold):
        return (
            earlier.pending_id == op.hold_id
            and str(earlier.phase) == Phase.POST_PENDING.value
            and (op.amount is None or earlier.amount == op.amount)
            and (op.type is None or earlier.type == op.type)
        )
    if isinstance(op, VoidHold):
        return earlier.pending_id == op.hold_id and str(earlier.phase) == Phase.VOID_PENDING.value
    return (
        earlier.reversal_of == op.transfer_id
        and (op.amount is None or earlier.amount == op.amount)
        and earlier.type == op.type
    )


# ---------------------------------------------------------------------------------------------
# Entry points


def apply_groups(
    conn: Connection, groups: Sequence[Group], *, clock: Callable[[], datetime]
) -> list[GroupResult]:
    """Apply each group all-or-nothing in the caller's transaction; one result per group.

    The caller commits. A result is the group's transfers (in operation order) or the error that
    refused it; a refused group wrote nothing.
    """
    results: list[GroupResult | None] = [None] * len(groups)
    encoded: list[list[str]] = [[] for _ in groups]
    valid: list[int] = []
    for index, group in enumerate(groups):
        try:
            encoded[index] = check_group(group)
        except LedgerError as exc:
            results[index] = exc
        else:
            valid.append(index)
    if valid:
        chosen = [groups[i] for i in valid]
        wants = _Wants.of(chosen)
        held: dict[int, Hold] = {}
        locked: dict[int, repo.AccountState] = {}
        if wants.hold_ids or wants.transfer_ids:
            # Holds and originals name more accounts: read them first, then lock every
            # account at once, in id order. The chain and the holds: one round trip.
            head, held = repo.lock_chain_and_holds(conn, wants.hold_ids)
        else:
            # Every account is known up front: one round trip takes both locks.
            head, locked = repo.lock_chain_and_accounts(conn, wants.account_ids)
        now = clock()
        if head.last_created_at is not None and head.last_created_at > now:
            now = head.last_created_at  # time never runs backwards in the books
        batch = _Batch(conn, head, now)
        batch.accounts.update(locked)
        batch.holds.update(held)
        batch.load(wants)
        staged_rows: dict[int, list[Transfer | TransferRow]] = {}
        for index in valid:
            outcome = batch.apply_group(groups[index], encoded[index])
            if isinstance(outcome, LedgerError):
                results[index] = outcome
            else:
                staged_rows[index] = outcome
        written = batch.write()
        for index, rows in staged_rows.items():
            results[index] = [written[r.id] if isinstance(r, TransferRow) else r for r in rows]
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def expire_due_holds(conn: Connection, *, clock: Callable[[], datetime], limit: int) -> int:
    """Release up to `limit` holds whose timeout has passed; returns how many."""
    head = repo.lock_chain(conn)
    now = clock()
    if head.last_created_at is not None and head.last_created_at > now:
        now = head.last_created_at
    batch = _Batch(conn, head, now)
    count = batch.expire_due(limit=limit)
    batch.write()
    return count


__all__ = ["GroupResult", "apply_groups", "check_amount", "expire_due_holds"]
