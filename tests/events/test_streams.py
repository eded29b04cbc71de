"""Live streams (issue 11, item 5): `GET /events/stream` (SSE) and `WS /ws` deliver the
caller's own events from the outbox as they commit, resume from a cursor without loss, say
`reset` for a cursor past retention, keep idle streams open with heartbeats, and refuse
whoever may not listen. Against a real uvicorn, on SQLite and PostgreSQL.

The safety-net poll is set to minutes here, so an event that arrives at all arrived through
the writer's wake-up, not the poll."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from coffer.db import Database
from coffer.events.tasks import purge_old_events
from coffer.kit.clock import utc_now
from tests.api.harness import Api, assert_error, make_api
from tests.api.live import serve_live
from tests.events.streaming import Message, receive, sse, websocket, ws_url
from tests.events.test_outbox import events_of
from tests.gifts.test_send_gift import gift, put_user
from tests.payments.helpers import assert_books_clean, paid_topup

SLOW_POLL_S = 300.0


@dataclass
class Live:
    api: Api
    base_url: str

    def token(self, user_id: str) -> str:
        return self.api.token(user_id)


@pytest.fixture
def live(db: Database) -> Iterator[Live]:
    with (
        make_api(db, stream_poll_s=SLOW_POLL_S, stream_heartbeat_s=SLOW_POLL_S) as api,
        serve_live(api.coffer.app) as base_url,
    ):
        yield Live(api, base_url)


def funded(api: Api, *users: str) -> None:
    for user in users:
        put_user(api, user)
        paid_topup(api, user)


def send(api: Api, sender: str, receiver: str, diamonds: int = 5) -> None:
    response = gift(api, sender, receiver_id=receiver, diamonds=diamonds)
    assert response.status_code == 201, response.text


def as_pulled(api: Api, user_id: str, event_id: int) -> dict[str, Any]:
    """The event as `GET /events` shows it: the streams must send exactly that."""
    (found,) = [e for e in events_of(api, user_id) if e["id"] == event_id]
    return found


def check_sse_event(api: Api, user_id: str, message: Message) -> dict[str, Any]:
    assert message.event is None  # the default `message` event: EventSource.onmessage
    body = message.json()
    assert message.id == str(body["id"])
    assert body == as_pulled(api, user_id, body["id"])
    return dict(body)


def test_sse_delivers_a_gift_event_as_it_commits(live: Live) -> None:
    funded(live.api, "fan", "host")
    with (
        sse(live.base_url, live.token("host")) as host,
        sse(live.base_url, live.token("fan")) as fan,
    ):
        send(live.api, "fan", "host")
        received = check_sse_event(live.api, "host", host.next_event())
        sent = check_sse_event(live.api, "fan", fan.next_event())
    assert received["type"] == "gift.received" and received["data"]["sender_id"] == "fan"
    assert sent["type"] == "gift.sent"
    assert_books_clean(live.api)


def test_websocket_delivers_a_gift_event_as_it_commits(live: Live) -> None:
    funded(live.api, "fan", "host")
    with (
        websocket(live.base_url, live.token("host")) as by_query,
        websocket(live.base_url, live.token("host"), header=True) as by_header,
    ):
        send(live.api, "fan", "host")
        first = receive(by_query)
        assert receive(by_header) == first
    assert first["type"] == "gift.received"
    assert first == as_pulled(live.api, "host", first["id"])
    assert_books_clean(live.api)


def test_a_token_in_the_query_works_for_browsers(live: Live) -> None:
    funded(live.api, "fan", "host")
    with sse(live.base_url, live.token("host"), in_query=True) as host:
        send(live.api, "fan", "host")
        assert check_sse_event(live.api, "host", host.next_event())["type"] == "gift.received"


def test_another_users_stream_does_not_see_the_event(live: Live) -> None:
    funded(live.api, "fan", "host", "bob")
    with (
        sse(live.base_url, live.token("bob")) as bob,
        websocket(live.base_url, live.token("bob")) as bob_ws,
    ):
        send(live.api, "fan", "host")  # host's and fan's events, none of bob's
        send(live.api, "fan", "bob")
        first = check_sse_event(live.api, "bob", bob.next_event())
        first_ws = receive(bob_ws)
    # The first thing bob hears is bob's own gift: nothing of host's came before it.
    assert first["type"] == "gift.received" and first_ws == first
    assert {e["id"] for e in events_of(live.api, "bob")} >= {first["id"]}
    host_ids = {e["id"] for e in events_of(live.api, "host")}
    assert first["id"] not in host_ids


def test_a_reconnect_with_last_event_id_gets_what_it_missed(live: Live) -> None:
    funded(live.api, "fan", "host")
    with sse(live.base_url, live.token("host")) as host:
        send(live.api, "fan", "host", 1)
        seen = check_sse_event(live.api, "host", host.next_event())
    # While host is away: two more gifts.
    send(live.api, "fan", "host", 2)
    send(live.api, "fan", "host", 3)
    missed = [e for e in events_of(live.api, "host") if e["id"] > seen["id"]]
    assert [e["data"]["diamonds"] for e in missed if e["type"] == "gift.received"] == [2, 3]
    with sse(live.base_url, live.token("host"), last_event_id=seen["id"]) as again:
        replayed = [check_sse_event(live.api, "host", again.next_event()) for _ in missed]
        # ... then live again on the same stream.
        send(live.api, "fan", "host", 4)
        after = check_sse_event(live.api, "host", again.next_event())
    assert replayed == missed
    assert after["type"] == "gift.received" and after["data"]["diamonds"] == 4
    # Last-Event-ID (a browser's reconnect) wins over the ?after= of the original URL.
    with sse(
        live.base_url, live.token("host"), last_event_id=seen["id"], query={"after": "0"}
    ) as again:
        assert again.next_event().json() == missed[0]
    # The WebSocket resumes with ?after= the same way.
    with websocket(live.base_url, live.token("host"), after=seen["id"]) as ws:
        assert [receive(ws) for _ in missed] == missed
    assert_books_clean(live.api)


def test_a_cursor_of_zero_replays_everything_kept(live: Live) -> None:
    funded(live.api, "host")
    kept = events_of(live.api, "host")
    assert kept
    with sse(live.base_url, live.token("host"), query={"after": "0"}) as host:
        assert [host.next_event().json() for _ in kept] == kept


def test_a_cursor_older_than_retention_gets_reset(live: Live) -> None:
    funded(live.api, "fan", "host")
    send(live.api, "fan", "host", 1)
    old = events_of(live.api, "host")
    later = utc_now() + timedelta(days=31)
    assert purge_old_events(live.api.database, lambda: later, retention_days=30) > 0
    # Purged from the pull API too (all but the newest event, which is always kept).
    assert [e["id"] for e in events_of(live.api, "host")] in ([], [old[-1]["id"]])
    with sse(live.base_url, live.token("host"), last_event_id=old[0]["id"]) as host:
        reset = host.next_event()
        assert reset.event == "reset"
        body = reset.json()
        assert body["type"] == "reset" and body["reason"] == "cursor_expired"
        assert reset.id == str(body["id"]) and body["id"] >= old[-1]["id"]
        send(live.api, "fan", "host", 2)  # after the reset, live events as usual
        fresh = check_sse_event(live.api, "host", host.next_event())
        assert fresh["id"] > body["id"] and fresh["data"]["diamonds"] == 2
    # Resuming from the reset's id is not a reset again.
    with sse(live.base_url, live.token("host"), last_event_id=body["id"]) as host:
        assert host.next_event().json() == fresh
    with websocket(live.base_url, live.token("host"), after=0) as ws:
        frame = receive(ws)
        assert frame["type"] == "reset" and frame["reason"] == "cursor_expired"
    assert_books_clean(live.api)


def test_a_cursor_beyond_every_event_gets_reset(live: Live) -> None:
    funded(live.api, "host")
    newest = events_of(live.api, "host")[-1]["id"]
    with sse(live.base_url, live.token("host"), last_event_id=10**12) as host:
        reset = host.next_event()
    assert reset.event == "reset"
    assert reset.json() == {"type": "reset", "id": newest, "reason": "cursor_unknown"}


def test_the_purge_keeps_a_prefix_and_what_is_young(live: Live) -> None:
    funded(live.api, "fan", "host")
    before = events_of(live.api, "host") + events_of(live.api, "fan")
    assert purge_old_events(live.api.database, utc_now, retention_days=1) == 0
    assert events_of(live.api, "host") + events_of(live.api, "fan") == before
    assert "events.purge" in live.api.coffer.background().names


def test_idle_streams_get_heartbeats(db: Database) -> None:
    with (
        make_api(db, stream_poll_s=SLOW_POLL_S, stream_heartbeat_s=0.2) as api,
        serve_live(api.coffer.app) as base_url,
    ):
        with sse(base_url, api.token("host")) as host:
            assert host.next_comment()  # the stream's opening comment
            assert host.next_comment().startswith("ping")
        with websocket(base_url, api.token("host")) as ws:
            assert ws.recv(timeout=10) == '{"type":"ping"}'


def test_refusals_on_the_sse_stream(api: Api) -> None:
    path = "/events/stream"
    assert_error(api.client.get(path), 401, "unauthenticated")
    assert_error(
        api.client.get(path, headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )
    assert_error(api.client.get(f"{path}?token=nope"), 401, "unauthenticated")
    assert_error(
        api.client.get(path, headers={"Authorization": "Basic eA=="}), 401, "unauthenticated"
    )
    assert_error(api.client.get(path, headers=api.service()), 403, "forbidden")
    assert_error(api.client.get(path, headers=api.admin()), 403, "forbidden")
    user = api.user("host")
    for bad in ("-1", "x", "1.5", "99999999999999999999", "9223372036854775808"):
        assert_error(
            api.client.get(path, headers={**user, "Last-Event-ID": bad}), 422, "validation_error"
        )
    for bad in ("-1", "x", "9223372036854775808"):
        assert_error(api.client.get(f"{path}?after={bad}", headers=user), 422, "validation_error")
    assert api.coffer.hub is not None and api.coffer.hub.open_streams() == 0  # none held


def test_refusals_on_the_websocket(live: Live) -> None:
    def status(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        with pytest.raises(InvalidStatus) as refused, websocket_raw(url, **kwargs):
            pass
        response = refused.value.response
        return response.status_code, json.loads(response.body)

    base = live.base_url
    code, body = status(ws_url(base))
    assert code == 401 and body["error"]["code"] == "unauthenticated"
    code, body = status(ws_url(base, "nope"))
    assert code == 401 and body["error"]["code"] == "unauthenticated"
    code, body = status(ws_url(base, live.api.key("service")))
    assert code == 403 and body["error"]["code"] == "forbidden"
    code, body = status(ws_url(base, live.token("host"), after=None) + "&after=x")
    assert code == 422 and body["error"]["code"] == "validation_error"


def websocket_raw(url: str, **kwargs: Any) -> Any:
    from websockets.sync.client import connect

    return connect(url, open_timeout=10, **kwargs)


def test_each_user_has_a_cap_on_open_streams(db: Database) -> None:
    with (
        make_api(db, stream_poll_s=SLOW_POLL_S, stream_connections_per_user_max=1) as api,
        serve_live(api.coffer.app) as base_url,
        sse(base_url, api.token("host")),
    ):
        refused = httpx.get(
            f"{base_url}/api/v1/events/stream", headers=api.user("host"), timeout=10
        )
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) > 0
        with (
            pytest.raises(InvalidStatus) as ws_refused,
            websocket_raw(ws_url(base_url, api.token("host"))),
        ):
            pass
        assert ws_refused.value.response.status_code == 429
        with sse(base_url, api.token("other")):  # someone else is not held back
            pass


def test_each_server_has_a_cap_on_all_its_streams(db: Database) -> None:
    with (
        make_api(db, stream_poll_s=SLOW_POLL_S, stream_connections_max=1) as api,
        serve_live(api.coffer.app) as base_url,
    ):
        with sse(base_url, api.token("host")):
            refused = httpx.get(
                f"{base_url}/api/v1/events/stream", headers=api.user("other"), timeout=10
            )
            assert_error(refused, 429, "rate_limited")
        # The place is given back once the first stream is gone (its server notices the close).
        for _ in range(100):
            if api.coffer.hub is not None and api.coffer.hub.open_streams() == 0:
                break
            threading.Event().wait(0.05)
        with sse(base_url, api.token("other")):
            pass
