"""API keys, the first admin key and the JWT secret, against the database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from coffer import auth
from coffer.auth import keys
from coffer.auth import service as auth_service
from coffer.auth.tables import api_keys
from coffer.db import Database
from coffer.errors import NotFound, Unauthenticated, ValidationFailed


def test_keys_are_stored_only_as_a_hash(db: Database) -> None:
    with db.unit_of_work() as session:
        made = auth.create_api_key(session, role="service", label="backend")
    assert keys.looks_like_key(made.key)
    assert made.record.prefix == made.key[:9]
    with db.read() as session:
        rows = session.execute(select(api_keys)).all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert made.key not in stored
    assert made.key[3:] not in stored
    assert bytes(rows[0].key_hash) == keys.hash_key(made.key)


def test_new_keys_differ() -> None:
    made = {keys.new_key() for _ in range(100)}
    assert len(made) == 100


def test_find_and_revoke(db: Database) -> None:
    with db.unit_of_work() as session:
        made = auth.create_api_key(session, role="admin")
    with db.read() as session:
        assert auth_service.find_active_key(session, made.key) == made.record
        assert auth_service.find_active_key(session, keys.new_key()) is None
        assert auth_service.find_active_key(session, "ck_tooshort") is None
    with db.unit_of_work() as session:
        revoked = auth.revoke_api_key(session, made.record.id)
        again = auth.revoke_api_key(session, made.record.id)
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    with db.read() as session:
        assert auth_service.find_active_key(session, made.key) is None
    with db.unit_of_work() as session, pytest.raises(NotFound):
        auth.revoke_api_key(session, "key_nope")


@pytest.mark.parametrize("role", ["user", "ADMIN", ""])
def test_roles_are_checked(db: Database, role: str) -> None:
    with db.unit_of_work() as session, pytest.raises(ValidationFailed):
        auth.create_api_key(session, role=role)


def test_authenticator_tells_keys_from_tokens(db: Database) -> None:
    secret = "j" * 32
    with db.unit_of_work() as session:
        admin = auth.create_api_key(session, role="admin")
        service = auth.create_api_key(session, role="service")
    authenticator = auth.Authenticator(db, jwt_secret=secret)
    assert authenticator.authenticate(admin.key) == auth.Principal(kind="admin", id=admin.record.id)
    assert authenticator.authenticate(service.key).kind == "service"
    token = authenticator.mint_user_token(user_id="u1").token
    assert authenticator.authenticate(token) == auth.Principal(kind="user", id="u1", user_id="u1")
    for bad in ("", None, "ck_", keys.new_key(), "x" * 5_000):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(bad)


def test_the_first_admin_key_is_issued_once(db: Database) -> None:
    with db.unit_of_work() as session:
        first = auth.issue_first_admin_key(session)
    assert first is not None and first.record.role == "admin"
    with db.unit_of_work() as session:
        assert auth.issue_first_admin_key(session) is None
    # Even once every admin key is revoked: the operator makes more with `coffer keys create`.
    with db.unit_of_work() as session:
        auth.revoke_api_key(session, first.record.id)
    with db.unit_of_work() as session:
        assert auth.issue_first_admin_key(session) is None


def test_no_first_admin_key_when_one_was_made_by_hand(db: Database) -> None:
    with db.unit_of_work() as session:
        auth.create_api_key(session, role="admin")
    with db.unit_of_work() as session:
        assert auth.issue_first_admin_key(session) is None


def test_processes_starting_together_issue_one_admin_key(db: Database) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def start(_: int) -> bool:
        barrier.wait()
        with db.unit_of_work() as session:
            return auth.issue_first_admin_key(session) is not None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        issued = list(pool.map(start, range(threads)))
    assert issued.count(True) == 1
    with db.read() as session:
        assert [k.role for k in auth.list_api_keys(session)] == ["admin"]


def test_jwt_secret_is_generated_once_and_kept(db: Database) -> None:
    with db.unit_of_work() as session:
        first = auth.jwt_secret(session, configured=None)
    with db.unit_of_work() as session:
        second = auth.jwt_secret(session, configured=None)
    assert first == second and len(first) >= 32
    configured = "c" * 40
    with db.unit_of_work() as session:
        assert auth.jwt_secret(session, configured=configured) == configured
    with db.unit_of_work() as session, pytest.raises(ValueError, match="32 bytes"):
        auth.jwt_secret(session, configured="short")
