"""Across processes an event reaches the stream wherever it was written (issue 11, item 5):
two `coffer serve` processes on PostgreSQL (LISTEN/NOTIFY), and two apps sharing Redis pub/sub.

The safety-net poll is set to minutes, so an event that arrives at all came by the wake-up."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import redis

from coffer import auth
from coffer.db import Database
from tests.api.harness import TEST_JWT_SECRET, make_api
from tests.api.live import serve_live
from tests.events.streaming import receive, sse, websocket
from tests.events.test_outbox import events_of
from tests.gifts.test_send_gift import gift, put_user
from tests.payments.helpers import assert_books_clean, paid_topup
from tests.support.servers import coffer_serve

SLOW_POLL_S = "300"
REDIS_URL = os.environ.get("COFFER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.slow
def test_an_event_written_through_one_server_reaches_a_stream_on_another(
    db: Database, tmp_path: Path
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("several processes share a database on PostgreSQL")
    url = db.engine.url.render_as_string(hide_password=False)
    minter = auth.Authenticator(db, jwt_secret=TEST_JWT_SECRET)
    env = {"COFFER_STREAM_POLL_S": SLOW_POLL_S, "COFFER_STREAM_HEARTBEAT_S": SLOW_POLL_S}

    def user(user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {minter.mint_user_token(user_id=user_id).token}"}

    with db.unit_of_work() as session:
        service_key = auth.create_api_key(session, role="service").key
    with (
        coffer_serve(url, jwt_secret=TEST_JWT_SECRET, log_dir=tmp_path, env=env) as one,
        coffer_serve(url, jwt_secret=TEST_JWT_SECRET, log_dir=tmp_path, env=env) as two,
        httpx.Client(base_url=one.base_url, timeout=30) as client,
    ):
        for name in ("fan", "host"):
            made = client.put(
                f"/users/{name}",
                json={"display_name": name},
                headers={"Authorization": f"Bearer {service_key}"},
            )
            assert made.status_code == 200, made.text
        order = client.post("/wallet/topup", json={"diamonds": 100}, headers=user("fan")).json()
        paid = client.post(
            "/wallet/verify",
            json={"order_id": order["order"]["id"], **order["order"]["checkout"]},
            headers=user("fan"),
        )
        assert paid.status_code == 200, paid.text
        root = two.base_url.removesuffix("/api/v1")
        token = minter.mint_user_token(user_id="host").token
        with sse(root, token) as stream, websocket(root, token) as ws:
            sent = client.post(
                "/wallet/send-gift",
                json={"receiver_id": "host", "diamonds": 7},
                headers=user("fan"),
            )
            assert sent.status_code == 201, sent.text
            by_sse = stream.next_event().json()
            by_ws = receive(ws)
        assert by_sse == by_ws
        assert by_sse["type"] == "gift.received" and by_sse["data"]["diamonds"] == 7


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unreachable ({exc}); set COFFER_TEST_REDIS_URL")
    return REDIS_URL


def test_with_redis_an_event_reaches_a_stream_held_by_another_app(
    db: Database, redis_url: str
) -> None:
    settings = {
        "redis_url": redis_url,
        "stream_poll_s": float(SLOW_POLL_S),
        "stream_heartbeat_s": float(SLOW_POLL_S),
    }
    with (
        make_api(db, **settings) as holding,
        make_api(db, **settings) as writing,
        serve_live(holding.coffer.app) as base_url,
    ):
        assert holding.coffer.hub is not None and holding.coffer.hub.transport == "redis"
        put_user(writing, "host")
        paid_topup(writing, "fan")
        with sse(base_url, holding.token("host")) as stream:
            response = gift(writing, "fan", receiver_id="host", diamonds=4)
            assert response.status_code == 201, response.text
            got = stream.next_event().json()
        assert got["type"] == "gift.received" and got["data"]["diamonds"] == 4
        assert got in events_of(writing, "host")
        assert_books_clean(writing)
