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
        # The budget is spent: every further failing guess is refused, whatever it is.
        _assert_rate_limited(api.client.get("/me", headers=bearer("guess-" + uuid.uuid4().hex)))
        _assert_rate_limited(api.client.get("/me", headers=bearer("ck_" + "x" * 43)))


def test_valid_credentials_are_never_locked_out_by_their_address(
    db: Database, storage: str | None
) -> None:
    # Issue 7 item 7: 60 bad tokens a minute from one address answered every valid user of
    # that address, and the admin key, 429.
    with make_api(db) as api:
        api.use_rate_limiter(_limiter(storage, per_principal="600/minute", failures="60/minute"))
        answers = [
            api.client.get("/me", headers=bearer("guess-" + uuid.uuid4().hex)).status_code
            for _ in range(61)
        ]
        assert answers == [401] * 60 + [429]
        assert api.client.get("/me", headers=api.user("u1")).status_code == 200
        assert api.client.get("/admin/payment-orders", headers=api.admin()).status_code == 200
        assert api.client.get("/me", headers=api.user("u2")).status_code == 200
        # ... and the address is still refused for anything that does not verify.
        _assert_rate_limited(api.client.get("/me", headers=bearer("guess-again")))
        revoked = api.new_key("service")
        with api.database.unit_of_work() as session:
            auth.revoke_api_key(session, revoked.record.id)
        _assert_rate_limited(api.client.get("/me", headers=bearer(revoked.key)))


def test_a_bad_credential_is_throttled_from_every_address(db: Database) -> None:
    limiter = _limiter(None, per_principal="100/minute", failures="2/minute")
    replayed = bearer("leaked-" + uuid.uuid4().hex)
    with make_api(db, client_address="203.0.113.7") as first:
        first.use_rate_limiter(limiter)
        for _ in range(2):
            assert_error(first.client.get("/me", headers=replayed), 401, "unauthenticated")
    with make_api(db, client_address="198.51.100.9") as second:
        second.use_rate_limiter(limiter)
        # A fresh address, but the credential has spent its budget.
        _assert_rate_limited(second.client.get("/me", headers=replayed))
        # The address itself still has budget for another credential.
        assert_error(second.client.get("/me", headers=bearer("other")), 401, "unauthenticated")
        assert second.client.get("/me", headers=second.user("u1")).status_code == 200


def test_failures_from_one_address_do_not_lock_out_another(db: Database) -> None:
    limiter = _limiter(None, per_principal="100/minute", failures="2/minute")
    with make_api(db, client_address="203.0.113.7") as attacker:
        attacker.use_rate_limiter(limiter)
        for _ in range(3):
            attacker.client.get("/me", headers=bearer("guess-" + uuid.uuid4().hex))
        _assert_rate_limited(attacker.client.get("/me", headers=bearer("guess")))
    with make_api(db, client_address="198.51.100.9") as honest:
        honest.use_rate_limiter(limiter)
        assert_error(honest.client.get("/me", headers=bearer("typo")), 401, "unauthenticated")
        assert honest.client.get("/me", headers=honest.user("u1")).status_code == 200


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(db: Database) -> None:
    limiter = _limiter(None, per_principal="100/minute", failures="2/minute")
    with make_api(db, client_address="203.0.113.7", trusted_proxies="10.0.0.0/8") as attacker:
        attacker.use_rate_limiter(limiter)
        # A new "client" in each header cannot dodge the limit ...
        for spoofed in ("192.0.2.1", "192.0.2.2"):
            response = attacker.client.get(
                "/me",
                headers={**bearer("guess-" + spoofed), "X-Forwarded-For": spoofed},
            )
            assert_error(response, 401, "unauthenticated")
        for header in ("X-Forwarded-For", "Forwarded"):
            value = "192.0.2.3" if header == "X-Forwarded-For" else "for=192.0.2.3"
            response = attacker.client.get(
                "/me", headers={**bearer("guess-" + uuid.uuid4().hex), header: value}
            )
            _assert_rate_limited(response)
        # ... nor frame another address: the one it named keeps its whole budget.
        for _ in range(2):
            attacker.client.get(
                "/me",
                headers={**bearer("guess-" + uuid.uuid4().hex), "X-Forwarded-For": "198.51.100.9"},
            )
    with make_api(db, client_address="198.51.100.9") as framed:
        framed.use_rate_limiter(limiter)
        for _ in range(2):
            response = framed.client.get("/me", headers=bearer("typo-" + uuid.uuid4().hex))
            assert_error(response, 401, "unauthenticated")


def test_forwarded_headers_from_a_trusted_proxy_name_the_client(db: Database) -> None:
    limiter = _limiter(None, per_principal="100/minute", failures="2/minute")
    with make_api(db, client_address="10.1.2.3", trusted_proxies="10.0.0.0/8, ::1") as proxied:
        proxied.use_rate_limiter(limiter)

        def guess(**headers: str) -> httpx.Response:
            return proxied.client.get(
                "/me", headers={**bearer("guess-" + uuid.uuid4().hex), **headers}
            )

        # The client 203.0.113.7 behind two proxies of ours; what it wrote itself (the
        # left-most entries) changes nothing.
        for spoofed in ("192.0.2.1", "192.0.2.2"):
            response = guess(**{"X-Forwarded-For": f"{spoofed}, 203.0.113.7, 10.9.9.9"})
            assert_error(response, 401, "unauthenticated")
        _assert_rate_limited(guess(**{"X-Forwarded-For": "203.0.113.7"}))
        _assert_rate_limited(guess(Forwarded='for=192.0.2.9, for="203.0.113.7:4711"'))
        # Another client behind the same proxy has its own budget ...
        assert_error(guess(**{"X-Forwarded-For": "198.51.100.9"}), 401, "unauthenticated")
        assert_error(
            guess(Forwarded='for="[2001:db8::17]:4711";proto=https'), 401, "unauthenticated"
        )
        # ... and a valid token from the limited one still works.
        response = proxied.client.get(
            "/me", headers={**proxied.user("u1"), "X-Forwarded-For": "203.0.113.7"}
        )
        assert response.status_code == 200, response.text


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
