"""Tamper evidence: each transfer's hash covers its content and the previous transfer's hash.

The encoding is fixed forever: changing it would break every chain already written. Fields are
joined with a unit separator that cannot appear in any of them unescaped (metadata is JSON, where
control characters are always escaped; types and keys are validated to printable text).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_SEP = "\x1f"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical_json(metadata: Mapping[str, Any] | None) -> str:
    """The one spelling of a metadata object that is stored and hashed."""
    if not metadata:
        return "{}"
    # allow_nan=False: NaN and Infinity are not JSON; stored, they would break every reader.
    return json.dumps(
        metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def timestamp_us(value: datetime | None) -> int | None:
    """Microseconds since the Unix epoch, exact (no float on the way)."""
    if value is None:
        return None
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def transfer_hash(
    previous_hash: bytes,
    *,
    transfer_id: int,
    group_id: int,
    debit_account_id: int,
    credit_account_id: int,
    asset: str,
    amount: int,
    type: str,
    phase: str,
    pending_id: int | None,
    reversal_of: int | None,
    idempotency_source: str,
    idempotency_key: str | None,
    metadata_json: str,
    expires_at: datetime | None,
    created_at: datetime,
    debit_balance_after: int,
    credit_balance_after: int,
) -> bytes:
    """SHA-256 over the previous hash and this transfer's canonical encoding."""
    assert len(previous_hash) == 32
    fields = (
        transfer_id,
        group_id,
        debit_account_id,
        credit_account_id,
        asset,
        amount,
        type,
        phase,
        "" if pending_id is None else pending_id,
        "" if reversal_of is None else reversal_of,
        idempotency_source,
        "" if idempotency_key is None else idempotency_key,
        metadata_json,
        "" if expires_at is None else timestamp_us(expires_at),
        timestamp_us(created_at),
        debit_balance_after,
        credit_balance_after,
    )
    encoded = _SEP.join(map(str, fields)).encode("utf-8")
    return hashlib.sha256(previous_hash + encoded).digest()
