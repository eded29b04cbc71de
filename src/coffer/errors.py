"""The root of Coffer's exceptions above the ledger, each with a stable `code`.

Only `api/errors.py` turns codes into HTTP statuses (API.md, "Errors"). The ledger has its own
root, `coffer.ledger.LedgerError`, with the same shape (`code`, `message`, `details`), because it
sits below everything and imports nothing from Coffer.

    CofferError
    ├── BadRequest              bad_request
    ├── ValidationFailed        validation_error
    │   └── ProviderOff         validation_error  (a request named a provider that is off)
    ├── Unauthenticated         unauthenticated
    ├── Forbidden               forbidden
    │   ├── KycRequired         kyc_required
    │   ├── AccountFrozen       account_frozen  (an operator froze the wallet: it may not spend)
    │   └── PayeeRequired       payee_required  (a payout without an active payee)
    ├── NotFound                not_found
    ├── InsufficientFunds       insufficient_funds
    ├── BelowMinimumBalance     below_minimum_balance
    ├── InvalidState            invalid_state
    ├── AlreadyProcessed        already_processed
    ├── IdempotencyConflict     idempotency_conflict
    ├── InvalidSignature        invalid_signature
    ├── RateLimited             rate_limited
    ├── ProviderDisabled        provider_disabled  (an enabled provider lacks a secret it needs)
    ├── ProviderUnavailable     provider_unavailable  (retry later)
    └── ProviderRejected        provider_rejected  (the provider said no)
"""

from __future__ import annotations

from typing import Any


class CofferError(Exception):
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class BadRequest(CofferError):
    code = "bad_request"


class ValidationFailed(CofferError):
    code = "validation_error"


class ProviderOff(ValidationFailed):
    """A request named a payment provider that is off here (no keys, the mock in production).

    A 422 naming the provider and why; never answered by another provider in its place."""


class Unauthenticated(CofferError):
    code = "unauthenticated"


class Forbidden(CofferError):
    code = "forbidden"


class KycRequired(Forbidden):
    code = "kyc_required"


class AccountFrozen(Forbidden):
    code = "account_frozen"


class PayeeRequired(Forbidden):
    code = "payee_required"


class NotFound(CofferError):
    code = "not_found"


class InsufficientFunds(CofferError):
    code = "insufficient_funds"


class BelowMinimumBalance(CofferError):
    code = "below_minimum_balance"


class InvalidState(CofferError):
    code = "invalid_state"


class AlreadyProcessed(CofferError):
    code = "already_processed"


class IdempotencyConflict(CofferError):
    code = "idempotency_conflict"


class InvalidSignature(CofferError):
    code = "invalid_signature"


class RateLimited(CofferError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class ProviderDisabled(CofferError):
    code = "provider_disabled"


class ProviderUnavailable(CofferError):
    code = "provider_unavailable"


class ProviderRejected(CofferError):
    code = "provider_rejected"
