"""An app on the test database, a client for it, and callers of every kind.

    def test_something(api: Api) -> None:
        api.client.put("/users/u1", json={...}, headers=api.service())   # paths under /api/v1
        r = api.client.get("/me", headers=api.user("u1"))
        assert_error(r, 403, "forbidden")

`make_api(db, rate_limit="3/minute")` builds one with other settings (keyword arguments are
`Settings` fields). Everything is real: the app is `coffer.server.assemble` on the test database,
the client is Starlette's TestClient (httpx) over ASGI, keys are made by the auth service and
user tokens are signed with the app's own secret.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.testclient import TestClient

from coffer import auth
from coffer.api.app import API_PREFIX
from coffer.config import Settings
from coffer.db import Database
from coffer.server import Coffer, assemble

TEST_JWT_SECRET = "test-jwt-secret-" + "k" * 32
# High enough that no test trips it by accident; rate-limit tests set their own.
TEST_RATE_LIMIT = "1000000/minute"
BASE_URL = f"http://testserver{API_PREFIX}"


def make_settings(database: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database.engine.url.render_as_string(hide_password=False),
        "jwt_secret": TEST_JWT_SECRET,
        "rate_limit": TEST_RATE_LIMIT,
        "auth_failure_rate_limit": TEST_RATE_LIMIT,
        "redis_url": None,
        "config": None,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    """The app, a client, and helpers for the headers of each kind of caller."""

    coffer: Coffer
    client: TestClient
    _keys: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Database:
        return self.coffer.database

    def new_key(self, role: str, *, label: str | None = None) -> auth.NewApiKey:
        with self.database.unit_of_work() as session:
            return auth.create_api_key(session, role=role, label=label)

    def key(self, role: str) -> str:
        """One key per role for this app, made on first use."""
        if role not in self._keys:
            self._keys[role] = self.new_key(role).key
        return self._keys[role]

    def admin(self) -> dict[str, str]:
        return bearer(self.key("admin"))

    def service(self) -> dict[str, str]:
        return bearer(self.key("service"))

    def token(self, user_id: str, *, ttl_s: int = 3_600) -> str:
        authenticator: auth.Authenticator = self.coffer.app.state.authenticator
        return authenticator.mint_user_token(user_id=user_id, ttl_s=ttl_s).token

    def user(self, user_id: str, *, ttl_s: int = 3_600) -> dict[str, str]:
        return bearer(self.token(user_id, ttl_s=ttl_s))

    def use_rate_limiter(self, limiter: auth.RateLimiter) -> None:
        """Swap in another limiter (e.g. Redis with a namespace of this test's own)."""
        self.coffer.app.state.rate_limiter.close()
        self.coffer.app.state.rate_limiter = limiter
        self.coffer.rate_limiter = limiter


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def make_api(
    database: Database, *, client_address: str = "testclient", **settings: Any
) -> Iterator[Api]:
    """An app on `database` (already migrated and emptied by the `db` fixture)."""
    coffer = assemble(make_settings(database, **settings), database)
    try:
        with TestClient(coffer.app, base_url=BASE_URL, client=(client_address, 50_000)) as client:
            yield Api(coffer=coffer, client=client)
    finally:
        coffer.close_writer()
        if coffer.rate_limiter is not None:
            coffer.rate_limiter.close()  # the database belongs to the fixture: not disposed


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is API.md's error shape with this status and code; returns its details."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return dict(error["details"])


def error_fields(response: httpx.Response) -> set[str]:
    """The `details.fields[].field` names of a 422."""
    details = assert_error(response, 422, "validation_error")
    return {f["field"] for f in details["fields"]}
