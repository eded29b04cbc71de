"""The rules of each operation (transfers, holds, posts and voids, reversals, expiry),
applied group by group to a batch's state."""

from __future__ import annotations

from datetime import timedelta

from coffer.ledger import repository as repo
from coffer.ledger.errors import (
    AccountNotFound,
    AssetMismatch,
    HoldExpired,
    HoldNotFound,
    HoldResolved,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    PostExceedsHold,
    ReversalExceeds,
    TransferNotFound,
)
from coffer.ledger.posting.checks import (
    _in_group,
    _same_content,
)
from coffer.ledger.posting.staging import (
    StagedResult,
    _BatchState,
    _Staged,
)
from coffer.ledger.repository import HoldResolution, TransferRow
from coffer.ledger.types import (
    POSTING_PHASES,
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

# Expiry on touch releases at most this many holds of one account per batch; the sweep, the rest.
_EXPIRE_ON_TOUCH_MAX = 100


class _Batch(_BatchState):
    """A batch's state with the rules that change it: each group all-or-nothing."""

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
