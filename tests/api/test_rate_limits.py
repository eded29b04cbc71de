"""Rate limits through the app: per principal, and per address for failed authentication, in
memory and in Redis (the real server on 127.0.0.1:6379)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from coffer import auth
from coffer.db import Database
from tests.api.harness import assert_error, bearer, make_api

REDIS_URL = os.environ.get("COFFER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI and is unreachable: {exc}")
        pytest.skip(f"Redis unreachable ({exc}); set COFFER_TEST_REDIS_URL")
    return REDIS_URL


def _limiter(storage_url: str | None, *, per_principal: str, failures: str) -> auth.RateLimiter:
    # A namespace of this test's own: other runs may share the Redis server at the same time.
    return auth.RateLimiter(
        per_principal=per_principal,
        auth_failures=failures,
        storage_url=storage_url,
        namespace=f"coffer-test-{uuid.uuid4().hex}",
    )


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "redis":
        yield request.getfixturevalue("redis_url")
    else:
        yield None


def _assert_rate_limited(response: httpx.Response, window_s: int = 60) -> None:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= window_s


def test_a_principal_over_its_limit_gets_429_with_retry_after(
    db: Database, storage: str | None
) -> None:
    with make_api(db) as api:
        api.use_rate_limiter(
            _limiter(
                storage,
                per_principal="3/minute",
                failures="100/minute",
            )
        )
        user = api.user("u1")
        for _ in range(3):
            assert api.client.get("/me", headers=user).status_code == 200
        _assert_rate_limited(api.client.get("/me", headers=user))
        # Another principal has its own budget.
        assert api.client.get("/me", headers=api.user("u2")).status_code == 200
        # A new token for the same user is the same principal.
        _assert_rate_limited(api.client.get("/me", headers=api.user("u1")))


def test_api_keys_are_limited_per_key(db: Database, storage: str | None) -> None:
    with make_api(db) as api:
        api.use_rate_limiter(
            _limiter(
                storage,
                per_principal="2/minute",
                failures="100/minute",
            )
        )
        first, second = api.new_key("service").key, api.new_key("service").key
        body = {"display_name": "U"}
        for _ in range(2):
            assert api.client.put("/users/u1", json=body, headers=bearer(first)).status_code == 200
        _assert_rate_limited(api.client.put("/users/u1", json=body, headers=bearer(first)))
        assert api.client.put("/users/u1", json=body, headers=bearer(second)).status_code == 200


def test_failed_authentication_is_throttled_per_address(db: Database, storage: str | None) -> None:
    with make_api(db) as api:
        api.use_rate_limiter(
            _limiter(
                storage,
                per_principal="100/minute",
                failures="3/minute",
            )
        )
        for _ in range(3):
            response = api.client.get("/me", headers=bearer("guess-" + uuid.uuid4().hex))
            assert_error(response, 401, "unauthenticated")
        # The budget is spent: even a right guess is refused now, so guessing learns nothing.
        _assert_rate_limited(api.client.get("/me", headers=api.user("u1")))
        _assert_rate_limited(api.client.get("/me", headers=bearer("guess")))


def test_failures_from_one_address_do_not_lock_out_another(db: Database) -> None:
    limiter = _limiter(None, per_principal="100/minute", failures="2/minute")
    with make_api(db, client_address="203.0.113.7") as attacker:
        attacker.use_rate_limiter(limiter)
        for _ in range(3):
            attacker.client.get("/me", headers=bearer("guess"))
        _assert_rate_limited(attacker.client.get("/me", headers=attacker.user("u1")))
    with make_api(db, client_address="198.51.100.9") as honest:
        honest.use_rate_limiter(limiter)
        assert honest.client.get("/me", headers=honest.user("u1")).status_code == 200


def test_missing_token_does_not_spend_the_failure_budget(db: Database) -> None:
    with make_api(db) as api:
        api.use_rate_limiter(_limiter(None, per_principal="100/minute", failures="2/minute"))
        for _ in range(5):
            assert_error(api.client.get("/me"), 401, "unauthenticated")
        assert api.client.get("/me", headers=api.user("u1")).status_code == 200


def test_processes_sharing_redis_share_the_count(db: Database, redis_url: str) -> None:
    namespace = f"coffer-test-{uuid.uuid4().hex}"

    def shared() -> auth.RateLimiter:
        return auth.RateLimiter(
            per_principal="4/minute",
            auth_failures="100/minute",
            storage_url=redis_url,
            namespace=namespace,
        )

    with make_api(db) as one, make_api(db) as two:
        one.use_rate_limiter(shared())
        two.use_rate_limiter(shared())
        token = one.token("u1")
        for api in (one, two, one, two):
            assert api.client.get("/me", headers=bearer(token)).status_code == 200
        _assert_rate_limited(two.client.get("/me", headers=bearer(token)))
        _assert_rate_limited(one.client.get("/me", headers=bearer(token)))


def test_settings_choose_redis(db: Database, redis_url: str) -> None:
    with make_api(db, redis_url=redis_url) as api:
        assert api.coffer.app.state.rate_limiter.backend == "redis"
        assert api.client.get("/me", headers=api.user("u1")).status_code == 200
    with make_api(db) as api:
        assert api.coffer.app.state.rate_limiter.backend == "memory"


def test_unreachable_redis_fails_open(db: Database) -> None:
    # Port 9 (discard) is closed on loopback: every counter call fails fast.
    with make_api(db, redis_url="redis://127.0.0.1:9/0", rate_limit="1/minute") as api:
        for _ in range(3):
            assert api.client.get("/me", headers=api.user("u1")).status_code == 200
