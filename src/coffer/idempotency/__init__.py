"""Idempotency-Key records: same key and request, the first answer byte for byte; nothing moves
again. See `service.py` for the transaction design and `coffer.api.idempotent` for the edge."""

from coffer.idempotency.repository import IdempotencyRecord
from coffer.idempotency.service import (
    HEADER,
    KEY_LENGTH_MAX,
    RETENTION_S_DEFAULT,
    RETENTION_S_MIN,
    claim,
    find,
    fingerprint,
    parse_key,
    purge_expired,
    record_answered,
    record_response,
    replayable,
)

__all__ = [
    "HEADER",
    "KEY_LENGTH_MAX",
    "RETENTION_S_DEFAULT",
    "RETENTION_S_MIN",
    "IdempotencyRecord",
    "claim",
    "find",
    "fingerprint",
    "parse_key",
    "purge_expired",
    "record_answered",
    "record_response",
    "replayable",
]
