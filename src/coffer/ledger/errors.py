"""The ledger's exceptions.

Every error carries a stable ``code`` that the HTTP layer maps to a status (API.md, "Errors").
Operating errors (a request the books refuse) are exceptions; programmer errors are asserts.

    LedgerError
    ├── InvalidTransfer          bad shape: amount, same account both sides, unknown type
    │   ├── AmountInvalid        zero, negative, not an int, or above AMOUNT_MAX
    │   ├── SameAccount          debit and credit account are the same
    │   └── AssetMismatch        the two accounts hold different assets
    ├── AccountNotFound / TransferNotFound / HoldNotFound / AssetNotFound
    ├── InsufficientFunds        a no-overdraft account would go below zero
    ├── ExceedsCredits           a no-overcredit account would go above zero
    ├── Overflow                 a counter would pass 2**63 - 1
    ├── HoldError                two-phase misuse
    │   ├── HoldResolved         the hold was already posted, voided or expired
    │   ├── HoldExpired          the hold timed out before it was resolved
    │   └── PostExceedsHold      posting more than is pending
    ├── ReversalExceeds          reversing more than what is left of the original
    ├── IdempotencyConflict      the key was used before with other content
    ├── LedgerUnavailable        the database failed; the outcome of the request is unknown
    └── LedgerBusy               the group-commit queue is full; nothing was accepted

A linked group is refused whole by the error of the operation that failed; its
`details["operation_index"]` says which one.

Apart from the tree, `InvariantViolated` (a plain `Exception`, no code): a check that guards
money failed, such as a guarded UPDATE that matched fewer rows than it was decided for. It is a
bug or a tampered database, never a request's fault: nothing maps it to a 4xx, the API answers
it 500 and logs it, and the transaction it was raised in rolls back. Unlike an `assert`, it
survives `python -O` (STYLE.md habit 8).
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Root of the ledger's exceptions; ``code`` is stable and machine-readable."""

    code = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps errors picklable across processes (benchmarks, crash tests) with their details.
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls: type[LedgerError], message: str, details: dict[str, Any]) -> LedgerError:
    return cls(message, **details)


class InvalidTransfer(LedgerError):
    code = "validation_error"


class AmountInvalid(InvalidTransfer):
    code = "validation_error"


class SameAccount(InvalidTransfer):
    code = "validation_error"


class AssetMismatch(InvalidTransfer):
    code = "validation_error"


class AccountNotFound(LedgerError):
    code = "not_found"


class AssetNotFound(LedgerError):
    code = "not_found"


class TransferNotFound(LedgerError):
    code = "not_found"


class HoldNotFound(LedgerError):
    code = "not_found"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class ExceedsCredits(LedgerError):
    code = "invalid_state"


class Overflow(LedgerError):
    code = "validation_error"


class HoldError(LedgerError):
    code = "invalid_state"


class HoldResolved(HoldError):
    code = "invalid_state"


class HoldExpired(HoldError):
    code = "invalid_state"


class PostExceedsHold(HoldError):
    code = "validation_error"


class ReversalExceeds(LedgerError):
    code = "invalid_state"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class LedgerUnavailable(LedgerError):
    code = "unavailable"


class InvariantViolated(Exception):  # not a LedgerError: no handler may map it to a 4xx
    """A check that guards money failed: roll back, answer 500, log it. Nothing catches it."""


class LedgerBusy(LedgerError):
    """The group-commit queue is full; the transfer was not accepted. Retry with backoff."""

    code = "unavailable"
