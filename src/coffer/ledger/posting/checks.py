"""Posting's pure checks: operation shapes (before anything is read) and whether a replayed
idempotency key carries the same content as what it made."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from coffer.ledger.errors import (
    AmountInvalid,
    InvalidTransfer,
    LedgerError,
    SameAccount,
)
from coffer.ledger.hashing import canonical_json
from coffer.ledger.repository import TransferRow
from coffer.ledger.types import (
    AMOUNT_MAX,
    HOLD_TIMEOUT_S_MAX,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    IDEMPOTENCY_SOURCE_LENGTH_MAX,
    METADATA_BYTES_MAX,
    TYPE_LENGTH_MAX,
    Group,
    Operation,
    Phase,
    PostHold,
    Reversal,
    Transfer,
    TransferRequest,
    VoidHold,
)

# \Z, not $: `$` also matches before a trailing newline, which would let "gift\n" through.
_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]*\Z")


# Types and sources already found valid: a batch names the same few thousands of times, and
# checking a string is pure (a set lookup instead of a regex). Bounded: once full, no more adds.
_VALID_STRINGS_MAX = 4_096


_valid_types: set[str] = set()


_valid_sources: set[str] = set()


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
