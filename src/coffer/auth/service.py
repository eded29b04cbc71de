"""API keys, the first admin key, and the secrets Coffer generates for itself (the JWT secret and
the mock provider's webhook secret). Functions take a session and never commit."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from coffer.auth import keys, tokens
from coffer.auth import repository as repo
from coffer.auth.principal import ROLES
from coffer.auth.repository import ApiKey
from coffer.errors import NotFound, ValidationFailed
from coffer.kit.clock import utc_now
from coffer.kit.ids import new_id

LABEL_LENGTH_MAX = 64
KEY_LIST_LIMIT_DEFAULT = 100
# last_used_at is a hint for operators, not an audit log: record it at most once a minute per
# key so a busy key does not turn every read into a write.
KEY_TOUCH_INTERVAL_S = 60

_JWT_SECRET_SETTING = "jwt_secret"  # noqa: S105 - the name of a setting, not a secret
_MOCK_WEBHOOK_SECRET_SETTING = "mock_webhook_secret"  # noqa: S105 - likewise
_FIRST_ADMIN_KEY = "first_admin_key"


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just made: `key` is the secret, shown once and never stored."""

    key: str
    record: ApiKey


def create_api_key(
    session: Session, *, role: str, label: str | None = None, now: datetime | None = None
) -> NewApiKey:
    """Make an API key with `role` (admin or service)."""
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", role=role)
    if label is not None and not (0 < len(label) <= LABEL_LENGTH_MAX and label.isprintable()):
        raise ValidationFailed(f"label must be 1 to {LABEL_LENGTH_MAX} printable characters")
    key = keys.new_key()
    record = repo.insert_key(
        session.connection(),
        key_id=new_id("key"),
        role=role,
        key_hash=keys.hash_key(key),
        prefix=keys.display_prefix(key),
        label=label,
        now=now or utc_now(),
    )
    return NewApiKey(key=key, record=record)


def revoke_api_key(session: Session, key_id: str, *, now: datetime | None = None) -> ApiKey:
    """Revoke a key (idempotent); requests with it are refused from the next one on."""
    conn = session.connection()
    if repo.get_key(conn, key_id) is None:
        raise NotFound(f"no API key {key_id}", key_id=key_id)
    repo.revoke_key(conn, key_id, now=now or utc_now())
    found = repo.get_key(conn, key_id)
    assert found is not None and found.revoked_at is not None
    return found


def list_api_keys(session: Session, *, limit: int = KEY_LIST_LIMIT_DEFAULT) -> list[ApiKey]:
    return repo.list_keys(session.connection(), limit=limit)


def find_active_key(session: Session, key: str) -> ApiKey | None:
    """The active key record for a presented key, or None (unknown, malformed or revoked)."""
    if not keys.looks_like_key(key):
        return None
    found = repo.find_key_by_hash(session.connection(), keys.hash_key(key))
    if found is None or not found.active:
        return None
    return found


def is_active_admin_key(session: Session, key_id: str) -> bool:
    """Whether `key_id` names an admin key that is not revoked (a console session is bound to
    one, and ends when the key is revoked)."""
    found = repo.get_key(session.connection(), key_id)
    return found is not None and found.active and found.role == "admin"


def record_key_use(session: Session, key_id: str, *, now: datetime | None = None) -> None:
    now = now or utc_now()
    repo.touch_key(
        session.connection(),
        key_id,
        now=now,
        stale_before=now - timedelta(seconds=KEY_TOUCH_INTERVAL_S),
    )


def key_use_is_stale(record: ApiKey, *, now: datetime) -> bool:
    return record.last_used_at is None or (
        now - record.last_used_at >= timedelta(seconds=KEY_TOUCH_INTERVAL_S)
    )


def issue_first_admin_key(session: Session, *, now: datetime | None = None) -> NewApiKey | None:
    """The database's first admin key, made once in its life; None every other time.

    It is made only if no admin key exists and none was ever issued this way. The marker row is
    claimed first with INSERT ... ON CONFLICT DO NOTHING, which decides between processes
    starting at once: one of them makes the key, the others (blocked until it commits) see the
    marker and make none.
    """
    now = now or utc_now()
    conn = session.connection()
    admin_exists = repo.role_exists(conn, "admin")
    claimed = repo.insert_setting_if_absent(
        conn, name=_FIRST_ADMIN_KEY, value="existing" if admin_exists else "issued", now=now
    )
    if admin_exists or not claimed:
        return None
    return create_api_key(session, role="admin", label="first admin key", now=now)


def jwt_secret(session: Session, *, configured: str | None, now: datetime | None = None) -> str:
    """The secret user tokens are signed with.

    `COFFER_JWT_SECRET` when set. Otherwise one generated on the first start and kept in
    `auth_settings`, so tokens survive restarts and every process sharing the database agrees
    (the first writer wins; the others read its value). Production refuses to start without
    COFFER_JWT_SECRET (`Settings.startup_refusals`), so this generates only in development.
    """
    if configured is not None:
        tokens.check_secret(configured)
        return configured
    stored = _kept_secret(session, _JWT_SECRET_SETTING, now=now)
    tokens.check_secret(stored)
    return stored


def mock_webhook_secret(
    session: Session, *, configured: str | None, now: datetime | None = None
) -> str:
    """The mock provider's secret: `COFFER_MOCK_WEBHOOK_SECRET` when set, else one generated
    once and kept in `auth_settings` like the JWT secret, so a mock order opened before a
    restart (or by another process on the database) still verifies."""
    if configured is not None:
        return configured
    return _kept_secret(session, _MOCK_WEBHOOK_SECRET_SETTING, now=now)


def _kept_secret(session: Session, name: str, *, now: datetime | None) -> str:
    """The value of setting `name`, drawn from the CSPRNG and stored on first use."""
    conn = session.connection()
    stored = repo.get_setting(conn, name)
    if stored is None:
        repo.insert_setting_if_absent(
            conn, name=name, value=secrets.token_urlsafe(48), now=now or utc_now()
        )
        stored = repo.get_setting(conn, name)
    if stored is None:
        raise RuntimeError(f"the generated secret {name!r} was not stored")
    return stored
