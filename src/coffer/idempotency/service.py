"""Idempotency-Key records (IETF draft "The Idempotency-Key HTTP Header Field").

A record is scoped to (principal, key). It holds a fingerprint of the request and, once the work
succeeded, the exact status and body bytes of the answer. The claim, the work and the answer are
written in ONE transaction (the caller's), so:

- a duplicate that arrives while the first is in flight waits on the unique (scope, key) index
  (PostgreSQL) or on the write lock (SQLite) and then finds the committed answer: the work runs
  once, however many copies arrive at once;
- a failure (a business error answered 4xx, or a crash) rolls the claim back with the work, so
  nothing is stored and a retry with the same key runs again. Only successes are replayed: a
  402 for want of funds would otherwise stay a 402 after the user topped up.

Functions take a session and never commit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.orm import Session

from coffer.errors import IdempotencyConflict, ValidationFailed
from coffer.idempotency import repository as repo
from coffer.idempotency.repository import IdempotencyRecord
from coffer.kit.clock import utc_now

HEADER = "Idempotency-Key"
KEY_LENGTH_MAX = 255
SCOPE_LENGTH_MAX = 80
PATH_LENGTH_MAX = 512
RETENTION_S_MIN = 24 * 3_600  # API.md: keys are kept at least 24 h
RETENTION_S_DEFAULT = 48 * 3_600
PURGE_BATCH_SIZE_MAX = 1_000


def parse_key(raw: str) -> str:
    """The key from a header value: a bare token or a quoted sf-string (`"8e03..."`).

    1 to 255 printable ASCII characters; `ValidationFailed` (422) otherwise.
    """
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    problem = None
    if not value:
        problem = "must not be empty"
    elif len(value) > KEY_LENGTH_MAX:
        problem = f"must be at most {KEY_LENGTH_MAX} characters"
    elif not all(" " <= ch <= "~" for ch in value) or '"' in value or "\\" in value:
        problem = "must be printable ASCII without quotes or backslashes"
    if problem is not None:
        raise ValidationFailed(
            f"the {HEADER} header {problem}",
            fields=[{"field": f"header.{HEADER}", "message": problem, "type": "idempotency_key"}],
        )
    return value


def fingerprint(*, method: str, path: str, query: str, body: bytes) -> bytes:
    """SHA-256 over the method, path, query and canonical body.

    A JSON body is canonicalised (keys sorted, no spaces) so re-serialising the same request
    does not look like another one; anything else counts byte for byte.
    """
    canonical_query = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        canonical_body = b"raw\x00" + body
    else:
        canonical_body = b"json\x00" + json.dumps(
            parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    digest = hashlib.sha256()
    for part in (method.upper().encode("ascii"), path.encode("utf-8"), canonical_query.encode()):
        digest.update(part)
        digest.update(b"\x00")
    digest.update(canonical_body)
    return digest.digest()


def find(session: Session, *, scope: str, key: str) -> IdempotencyRecord | None:
    return repo.find(session.connection(), scope=scope, key=key)


def replayable(record: IdempotencyRecord, *, fingerprint: bytes) -> IdempotencyRecord:
    """`record` if it answers this request; `IdempotencyConflict` if the key was used for
    another one."""
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request",
            idempotency_key=record.key,
        )
    assert record.status_code is not None and record.body is not None, "committed => answered"
    return record


def claim(
    session: Session,
    *,
    scope: str,
    key: str,
    fingerprint: bytes,
    method: str,
    path: str,
    now: datetime | None = None,
) -> IdempotencyRecord | None:
    """Claim (scope, key) for this transaction: None if claimed (run the work), else the
    committed record of an earlier request (replay it, or it conflicts).

    Call it first in the transaction, before the work takes any other lock, so a waiting
    duplicate holds nothing another transaction needs.
    """
    assert 0 < len(scope) <= SCOPE_LENGTH_MAX and 0 < len(key) <= KEY_LENGTH_MAX
    conn = session.connection()
    claimed = repo.insert_if_absent(
        conn,
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        method=method.upper()[:8],
        path=path[:PATH_LENGTH_MAX],
        now=now or utc_now(),
    )
    if claimed:
        return None
    earlier = repo.find(conn, scope=scope, key=key)
    assert earlier is not None, "a conflicting claim is visible once it has committed"
    return earlier


def record_response(
    session: Session,
    *,
    scope: str,
    key: str,
    status_code: int,
    content_type: str,
    body: bytes,
) -> None:
    """Store the answer to a claimed key, in the transaction that claimed it."""
    assert 100 <= status_code <= 599
    repo.set_response(
        session.connection(),
        scope=scope,
        key=key,
        status_code=status_code,
        content_type=content_type,
        body=body,
    )


def record_answered(
    session: Session,
    *,
    scope: str,
    key: str,
    fingerprint: bytes,
    method: str,
    path: str,
    status_code: int,
    content_type: str,
    body: bytes,
    now: datetime | None = None,
) -> None:
    """Store a key with its answer at once: for units of work, whose writer looked the key up
    (`find`) under the ledger's write lock in the same transaction, so nobody else claimed it."""
    assert 0 < len(scope) <= SCOPE_LENGTH_MAX and 0 < len(key) <= KEY_LENGTH_MAX
    assert 100 <= status_code <= 599
    repo.insert_answered(
        session.connection(),
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        method=method.upper()[:8],
        path=path[:PATH_LENGTH_MAX],
        status_code=status_code,
        content_type=content_type,
        body=body,
        now=now or utc_now(),
    )


def purge_expired(
    session: Session,
    *,
    now: datetime | None = None,
    retention_s: int = RETENTION_S_DEFAULT,
    batch_size_max: int = PURGE_BATCH_SIZE_MAX,
) -> int:
    """Delete up to `batch_size_max` records older than `retention_s`; how many went.

    Call it again while it returns `batch_size_max` (short transactions, never a long lock).
    """
    assert retention_s >= RETENTION_S_MIN, "API.md promises keys are kept at least 24 h"
    assert 0 < batch_size_max <= PURGE_BATCH_SIZE_MAX
    cutoff = (now or utc_now()) - timedelta(seconds=retention_s)
    return repo.delete_older_than(session.connection(), cutoff=cutoff, limit=batch_size_max)
