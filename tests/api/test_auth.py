"""Authentication and roles, end to end: 401s for every bad credential, 403s for every wrong role."""

from __future__ import annotations

import base64
import json
import secrets
import string
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from coffer import auth
from coffer.auth import tokens
from tests.api.harness import TEST_JWT_SECRET, Api, assert_error, bearer, error_fields

AGENCY = {"name": "Stars", "commission_bps": 1_000}


def _random_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "ck_" + "".join(secrets.choice(alphabet) for _ in range(43))


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


# ---------------------------------------------------------------------------------------------
# 401


def test_missing_token_is_401(api: Api) -> None:
    assert_error(api.client.get("/me"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ck_short",
        "Bearer ck_" + "!" * 43,
        "Bearer " + "x" * 5_000,
        "Bearer ünïcode".encode("latin-1"),
    ],
)
def test_malformed_credentials_are_401(api: Api, authorization: str | bytes) -> None:
    response = api.client.get("/me", headers={"Authorization": authorization})
    assert_error(response, 401, "unauthenticated")


def test_expired_token_is_401(api: Api) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    issued = tokens.mint_user_token(TEST_JWT_SECRET, user_id="u1", ttl_s=60, now=past)
    response = api.client.get("/me", headers=bearer(issued.token))
    details = assert_error(response, 401, "unauthenticated")
    assert "expired" in response.json()["error"]["message"]
    assert details == {}


def test_tampered_token_is_401(api: Api) -> None:
    token = _tamper(api.token("u1"))
    assert_error(api.client.get("/me", headers=bearer(token)), 401, "unauthenticated")


def test_token_signed_with_another_secret_is_401(api: Api) -> None:
    other = tokens.mint_user_token(
        "another-secret-" + "z" * 32, user_id="u1", ttl_s=600, now=datetime.now(UTC)
    )
    assert_error(api.client.get("/me", headers=bearer(other.token)), 401, "unauthenticated")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u1"},  # no exp
        {"exp": 4_000_000_000},  # no sub
        {"sub": "bad id!", "exp": 4_000_000_000},
        {"sub": 42, "exp": 4_000_000_000},
        {"sub": "u" * 65, "exp": 4_000_000_000},
    ],
)
def test_token_without_valid_claims_is_401(api: Api, claims: dict[str, object]) -> None:
    token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    assert_error(api.client.get("/me", headers=bearer(token)), 401, "unauthenticated")


def test_unsigned_token_is_401(api: Api) -> None:
    token = jwt.encode({"sub": "u1", "exp": 4_000_000_000}, None, algorithm="none")
    assert_error(api.client.get("/me", headers=bearer(token)), 401, "unauthenticated")


def test_unknown_key_is_401(api: Api) -> None:
    response = api.client.put("/agencies/a1", json=AGENCY, headers=bearer(_random_key()))
    assert_error(response, 401, "unauthenticated")


def test_revoked_key_is_401_from_the_next_request(api: Api) -> None:
    made = api.new_key("admin")
    ok = api.client.put("/agencies/a1", json=AGENCY, headers=bearer(made.key))
    assert ok.status_code == 200, ok.text
    with api.database.unit_of_work() as session:
        auth.revoke_api_key(session, made.record.id)
    response = api.client.put("/agencies/a1", json=AGENCY, headers=bearer(made.key))
    assert_error(response, 401, "unauthenticated")


def test_key_use_is_recorded(api: Api) -> None:
    made = api.new_key("service")
    assert made.record.last_used_at is None
    api.client.put("/users/u1", json={"display_name": "U"}, headers=bearer(made.key))
    with api.database.read() as session:
        (found,) = [k for k in auth.list_api_keys(session) if k.id == made.record.id]
    assert found.last_used_at is not None


# ---------------------------------------------------------------------------------------------
# 403 and roles


def test_user_token_cannot_use_admin_or_service_routes(api: Api) -> None:
    user = api.user("u1")
    assert_error(api.client.put("/agencies/a1", json=AGENCY, headers=user), 403, "forbidden")
    response = api.client.put("/users/u1", json={"display_name": "Me"}, headers=user)
    assert_error(response, 403, "forbidden")
    response = api.client.post("/auth/token", json={"user_id": "u1"}, headers=user)
    assert_error(response, 403, "forbidden")


def test_service_key_cannot_use_admin_routes(api: Api) -> None:
    response = api.client.put("/agencies/a1", json=AGENCY, headers=api.service())
    assert_error(response, 403, "forbidden")


def test_admin_key_may_do_what_a_service_key_may(api: Api) -> None:
    response = api.client.put("/users/u1", json={"display_name": "U"}, headers=api.admin())
    assert response.status_code == 200, response.text
    response = api.client.post("/auth/token", json={"user_id": "u1"}, headers=api.admin())
    assert response.status_code == 200, response.text


def test_keys_are_not_users(api: Api) -> None:
    assert_error(api.client.get("/me", headers=api.service()), 403, "forbidden")
    assert_error(api.client.get("/me", headers=api.admin()), 403, "forbidden")


def test_user_token_acts_on_its_own_user_only(api: Api) -> None:
    mine = api.client.get("/users/u1", headers=api.user("u1"))
    assert mine.status_code == 200, mine.text
    assert mine.json()["id"] == "u1"
    theirs = api.client.get("/users/u2", headers=api.user("u1"))
    assert_error(theirs, 403, "forbidden")
    assert "u2" not in theirs.text  # nothing of the other user leaks
    for headers in (api.service(), api.admin()):
        response = api.client.get("/users/u2", headers=headers)
        assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------------------------
# POST /auth/token


def test_service_key_mints_a_working_user_token(api: Api) -> None:
    before = datetime.now(UTC)
    response = api.client.post(
        "/auth/token", json={"user_id": "u1", "ttl_s": 600}, headers=api.service()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert (
        before + timedelta(seconds=598) <= expires_at <= datetime.now(UTC) + timedelta(seconds=601)
    )
    me = api.client.get("/me", headers=bearer(body["token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == "u1"


def test_token_ttl_defaults_to_an_hour(api: Api) -> None:
    response = api.client.post("/auth/token", json={"user_id": "u1"}, headers=api.service())
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3_600
    assert claims["sub"] == "u1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u1", "ttl_s": 59}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": 30 * 24 * 3_600 + 1}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": -1}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": 3_600.0}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": "3600"}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": True}, "body.ttl_s"),
        ({"user_id": "u1", "ttl_s": 10**30}, "body.ttl_s"),
        ({"user_id": "bad id"}, "body.user_id"),
        ({"user_id": ""}, "body.user_id"),
        ({"user_id": "u" * 65}, "body.user_id"),
        ({"user_id": 7}, "body.user_id"),
        ({}, "body.user_id"),
        ({"user_id": "u1", "role": "admin"}, "body.role"),
    ],
)
def test_token_request_is_validated(api: Api, body: dict[str, object], field: str) -> None:
    response = api.client.post("/auth/token", json=body, headers=api.service())
    assert field in error_fields(response)


def test_token_at_the_longest_ttl(api: Api) -> None:
    body = {"user_id": "u1", "ttl_s": 30 * 24 * 3_600}
    response = api.client.post("/auth/token", json=body, headers=api.service())
    assert response.status_code == 200, response.text


def test_token_request_needs_a_key(api: Api) -> None:
    assert_error(api.client.post("/auth/token", json={"user_id": "u1"}), 401, "unauthenticated")


def test_openapi_documents_bearer_auth(api: Api) -> None:
    document = api.client.get("http://testserver/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
