"""The ledger's vocabulary: requests in, records out, all frozen and in minor units."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# An amount is a count of an asset's minor units (paise, cents, diamonds). The cap keeps every
# amount exact in a JSON number (2**53 - 1) and leaves counters room before 64-bit overflow.
AMOUNT_MAX = 2**53 - 1
COUNTER_MAX = 2**63 - 1
TYPE_LENGTH_MAX = 32
IDEMPOTENCY_KEY_LENGTH_MAX = 255
IDEMPOTENCY_SOURCE_LENGTH_MAX = 64
METADATA_BYTES_MAX = 8 * 1024
HOLD_TIMEOUT_S_MAX = 30 * 24 * 3600
DEFAULT_SOURCE = "ledger"


class AccountFlags(enum.IntFlag):
    """Per-account rules, checked on every change of the account's counters."""

    NONE = 0
    # A user's wallet: credits_posted - debits_posted - debits_pending >= 0, always.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    # The mirror rule, for accounts that may only ever be owed (receivables).
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class Phase(enum.StrEnum):
    """What a transfer row does to its accounts' counters."""

    POSTED = "posted"  # single-phase: moves posted amounts at once
    PENDING = "pending"  # opens a hold: moves pending amounts
    POST_PENDING = "post_pending"  # resolves a hold: releases it, posts `amount` (<= the hold)
    VOID_PENDING = "void_pending"  # resolves a hold: releases it, posts nothing
    EXPIRE_PENDING = "expire_pending"  # a void made by the clock at the hold's timeout


RESOLVING_PHASES = frozenset({Phase.POST_PENDING, Phase.VOID_PENDING, Phase.EXPIRE_PENDING})
POSTING_PHASES = frozenset({Phase.POSTED, Phase.POST_PENDING})


class HoldStatus(enum.StrEnum):
    OPEN = "open"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Move `amount` from the debit account to the credit account (or hold it, if `pending`)."""

    debit_account_id: int
    credit_account_id: int
    amount: int
    type: str
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    pending: bool = False
    timeout_s: int | None = None  # pending only: the hold expires this long after it is made


@dataclass(frozen=True, slots=True)
class PostHold:
    """Post a hold in full (`amount=None`) or in part; the rest is released."""

    hold_id: int
    amount: int | None = None
    type: str | None = None  # defaults to the hold's own type
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class VoidHold:
    """Release a hold; nothing is posted."""

    hold_id: int
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Reversal:
    """A new transfer the other way, linked to a posted original; `amount=None` reverses all
    that is left of it."""

    transfer_id: int
    amount: int | None = None
    type: str = "reversal"
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


Operation = TransferRequest | PostHold | VoidHold | Reversal


@dataclass(frozen=True, slots=True)
class Group:
    """Linked operations: all of them commit or none does."""

    operations: Sequence[Operation]
    source: str = DEFAULT_SOURCE  # idempotency keys are unique per source


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    scale: int


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    asset: str
    owner_type: str
    owner_id: str
    kind: str
    flags: AccountFlags
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    created_at: datetime

    @property
    def balance(self) -> int:
        """Posted balance, credit-normal: what a wallet holds (negative for a money source)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What may still be debited: the posted balance less the holds on it."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    group_id: int
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: int
    type: str
    phase: Phase
    pending_id: int | None
    reversal_of: int | None
    idempotency_source: str
    idempotency_key: str | None
    metadata: dict[str, Any]
    expires_at: datetime | None
    created_at: datetime
    # Both accounts' posted balances (credit-normal) right after this transfer.
    debit_balance_after: int
    credit_balance_after: int
    hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Hold:
    id: int  # the pending transfer's id
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: int
    type: str
    status: HoldStatus
    expires_at: datetime | None
    resolved_by: int | None
    resolved_at: datetime | None
