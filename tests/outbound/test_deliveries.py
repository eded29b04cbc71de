"""Outbound webhooks end to end: real events from the HTTP app, a real receiver on 127.0.0.1,
signatures checked with the `standardwebhooks` package, retries on a clock the test moves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from coffer import events, outbound
from coffer.outbound import schedule
from tests.api.harness import Api, assert_error
from tests.outbound.helpers import audit, deliver, deliveries, endpoint, register, use_clock
from tests.outbound.receiver import Receiver
from tests.payments.helpers import assert_books_clean, paid_topup


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def emit(api: Api, user_id: str, *, at: datetime) -> None:
    with api.database.unit_of_work() as session:
        events.emit(session, [events.NewEvent(user_id, "payment.updated", {"n": 1})], now=at)


def parsed(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00"))


def test_a_delivery_is_signed_by_the_standard_and_filtered_by_type(
    api: Api, receiver: Receiver
) -> None:
    clock = use_clock(api)
    paid_topup(api, "before")  # before any endpoint: nobody is sent it
    payments = register(api, receiver.url, ["payment.updated"], reason="host app")
    assert payments["secret"].startswith("whsec_") and payments["events"] == ["payment.updated"]
    everything = register(api, receiver.url + "/all", ["*"])
    order = paid_topup(api, "alice")

    made = deliver(api, clock)
    assert made == 3  # payment.updated to both; wallet.updated to "*" only
    assert deliver(api, clock) == 0  # nothing twice
    by_path: dict[str, list[dict[str, object]]] = {}
    for request in receiver.received:
        secret = payments["secret"] if request.path == "/hooks" else everything["secret"]
        body = Webhook(secret).verify(request.body, request.headers)  # raises if it is wrong
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"] == f"msg_{body['event_id']}"
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        by_path.setdefault(request.path, []).append(body)
    (only,) = by_path["/hooks"]
    assert only["type"] == "payment.updated" and only["user_id"] == "alice"
    assert only["data"]["order_id"] == order["id"]  # type: ignore[index]
    assert only["data"]["status"] == "succeeded"  # type: ignore[index]
    assert sorted(str(b["type"]) for b in by_path["/hooks/all"]) == [
        "payment.updated",
        "wallet.updated",
    ]
    # Another endpoint's secret does not verify it.
    mine = next(r for r in receiver.received if r.path == "/hooks")
    with pytest.raises(WebhookVerificationError):
        Webhook(everything["secret"]).verify(mine.body, mine.headers)
    log = deliveries(api, endpoint_id=payments["id"])
    (delivery,) = log
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
    (attempt,) = delivery["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0
    assert attempt["error"] is None
    assert_books_clean(api)


def test_a_failing_endpoint_is_retried_on_the_schedule_then_given_up(
    api: Api, receiver: Receiver
) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    receiver.answer(*[(500, {})] * schedule.ATTEMPTS_MAX)
    paid_topup(api, "alice")
    start = clock()
    for step, wait_s in enumerate(schedule.RETRY_SCHEDULE_S, start=1):
        clock.advance(seconds=wait_s * (1 + schedule.JITTER_FRACTION) + 1)
        assert deliver(api, clock) == 1, step
        (delivery,) = deliveries(api, endpoint_id=hook["id"])
        assert delivery["attempts"] == step
        if step < schedule.ATTEMPTS_MAX:
            assert delivery["status"] == "pending"
            # Not before the next step of the schedule, and not much after it (the jitter).
            due_in_s = (parsed(delivery["next_attempt_at"]) - clock()).total_seconds()
            next_s = schedule.RETRY_SCHEDULE_S[step]
            assert next_s <= due_in_s <= next_s * (1 + schedule.JITTER_FRACTION)
            # Early, nothing is sent.
            assert deliver(api, clock) == 0
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500] * schedule.ATTEMPTS_MAX
    assert delivery["last_error"] == "HTTP 500"
    assert len(receiver.received) == schedule.ATTEMPTS_MAX
    # The whole schedule took about 28.5 hours, and is over: a day later nothing more goes.
    assert (clock() - start).total_seconds() > sum(schedule.RETRY_SCHEDULE_S)
    clock.advance(days=1)
    assert deliver(api, clock) == 0
    assert deliveries(api, status="failed")[0]["id"] == delivery["id"]
    assert deliveries(api, status="pending") == []


def test_429_with_retry_after_slows_the_endpoint_down(api: Api, receiver: Receiver) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    paid_topup(api, "alice")
    paid_topup(api, "bob")
    receiver.answer((429, {"Retry-After": "120"}))
    assert deliver(api, clock) == 1  # the second waits: the endpoint asked us to slow down
    assert len(receiver.received) == 1
    throttled = parsed(endpoint(api, hook["id"])["throttled_until"])
    assert (throttled - clock()).total_seconds() == 120
    for delivery in deliveries(api, endpoint_id=hook["id"]):
        assert delivery["status"] == "pending"
        assert parsed(delivery["next_attempt_at"]) >= throttled
    clock.advance(seconds=60)
    assert deliver(api, clock) == 0  # Retry-After is honoured over the 5 s step
    clock.advance(seconds=61)
    assert deliver(api, clock) == 2
    statuses = {d["status"] for d in deliveries(api, endpoint_id=hook["id"])}
    assert statuses == {"succeeded"}


def test_503_with_a_retry_after_date_and_a_dead_address(api: Api, receiver: Receiver) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    dead = register(api, "http://127.0.0.1:9/nobody-listens", ["payment.updated"])
    receiver.answer((503, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    paid_topup(api, "alice")
    assert deliver(api, clock) == 2
    (late,) = deliveries(api, endpoint_id=hook["id"])
    # A date far away is honoured only up to the schedule's longest step.
    due_in_s = (parsed(late["next_attempt_at"]) - clock()).total_seconds()
    assert due_in_s == schedule.RETRY_AFTER_MAX_S
    (unreachable,) = deliveries(api, endpoint_id=dead["id"])
    assert unreachable["status"] == "pending" and unreachable["last_status_code"] is None
    (attempt,) = unreachable["attempt_log"]
    assert attempt["status_code"] is None and attempt["error"].startswith("ConnectError")


def test_410_disables_the_endpoint_with_an_alert_and_recover_sends_again(
    api: Api, receiver: Receiver
) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    receiver.answer((410, {}))
    paid_topup(api, "alice")
    assert deliver(api, clock) == 1
    gone = endpoint(api, hook["id"])
    assert gone["status"] == "disabled" and gone["disabled_reason"] == "410 Gone"
    (failed,) = deliveries(api, endpoint_id=hook["id"])
    assert failed["status"] == "failed" and failed["last_status_code"] == 410
    alerts = api.client.get("/admin/alerts", headers=api.admin()).json()["data"]
    assert [a["kind"] for a in alerts] == ["webhook_endpoint.disabled"]
    assert alerts[0]["subject_id"] == hook["id"]
    (entry,) = audit(api, "webhook_endpoint.disable")
    assert entry["actor"] == "system" and entry["subject_id"] == hook["id"]

    # Disabled: nothing is fanned out to it meanwhile.
    clock.advance(minutes=5)
    paid_topup(api, "skipped")
    clock.advance(minutes=5)
    paid_topup(api, "bob")
    assert deliver(api, clock) == 0  # nothing goes to a disabled endpoint
    assert len(deliveries(api, endpoint_id=hook["id"])) == 1
    refused = api.client.post(
        f"/admin/webhook-deliveries/{failed['id']}/resend",
        json={"reason": "try again"},
        headers=api.admin(),
    )
    assert_error(refused, 409, "invalid_state")

    # Recover from before the first failure: the 410'd delivery goes again, and what it missed.
    response = api.client.post(
        f"/admin/webhook-endpoints/{hook['id']}/recover",
        json={"since": failed["created_at"], "reason": "the host app is back"},
        headers=api.admin(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["requeued"] == 1
    assert response.json()["endpoint"]["status"] == "enabled"
    assert deliver(api, clock) >= 1
    users = sorted(json.loads(r.body)["user_id"] for r in receiver.received)
    # Recovered from before the failure: every event since, the one that failed included.
    assert users == ["alice", "alice", "bob", "skipped"]
    (recovered,) = audit(api, "webhook_endpoint.recover")
    assert recovered["reason"] == "the host app is back"
    assert recovered["details"]["requeued"] == 1 and recovered["details"]["was"] == "disabled"

    # Disabled again, recovered since a later time: what came before it is not sent.
    receiver.answer((410, {}))
    paid_topup(api, "carol")
    deliver(api, clock)
    assert endpoint(api, hook["id"])["status"] == "disabled"
    # (Emitted straight into the outbox at the test's times: the writer keeps the wall clock.)
    clock.advance(minutes=5)
    emit(api, "old-news", at=clock())
    clock.advance(minutes=5)
    since = clock()
    clock.advance(minutes=5)
    emit(api, "dave", at=clock())
    response = api.client.post(
        f"/admin/webhook-endpoints/{hook['id']}/recover",
        json={"since": since.isoformat(), "reason": "back again"},
        headers=api.admin(),
    )
    assert response.status_code == 200 and response.json()["requeued"] == 0
    deliver(api, clock)
    users = [json.loads(r.body)["user_id"] for r in receiver.received[4:]]
    assert users == ["carol", "dave"]
    assert_books_clean(api)


def test_a_rotated_secret_and_the_old_one_both_sign_for_24_hours(
    api: Api, receiver: Receiver
) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    response = api.client.post(
        f"/admin/webhook-endpoints/{hook['id']}/rotate-secret",
        json={"reason": "yearly rotation"},
        headers=api.admin(),
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["secret"] != hook["secret"] and rotated["secret"].startswith("whsec_")
    overlap_s = (parsed(rotated["previous_secret_expires_at"]) - clock()).total_seconds()
    assert overlap_s == 24 * 3600
    (entry,) = audit(api, "webhook_endpoint.rotate_secret")
    assert entry["reason"] == "yearly rotation"
    assert hook["secret"] not in json.dumps(entry) and rotated["secret"] not in json.dumps(entry)

    paid_topup(api, "alice")
    assert deliver(api, clock) == 1
    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated["secret"]):
        Webhook(secret).verify(request.body, request.headers)  # each key verifies on its own

    # A day later only the new secret signs (checked by the package's own `sign`: its
    # `verify` compares the timestamp with the wall clock).
    clock.advance(hours=24, seconds=1)
    paid_topup(api, "bob")
    assert deliver(api, clock) == 1
    later = receiver.received[1]
    (only,) = later.headers["webhook-signature"].split(" ")
    expected = Webhook(rotated["secret"]).sign(
        later.headers["webhook-id"], clock(), later.body.decode()
    )
    assert only == expected
    listed = endpoint(api, hook["id"])
    assert "secret" not in listed  # a list never shows a secret


def test_resend_queues_one_delivery_again_with_the_same_webhook_id(
    api: Api, receiver: Receiver
) -> None:
    clock = use_clock(api)
    hook = register(api, receiver.url, ["payment.updated"])
    paid_topup(api, "alice")
    deliver(api, clock)
    (delivery,) = deliveries(api)
    response = api.client.post(
        f"/admin/webhook-deliveries/{delivery['id']}/resend",
        json={"reason": "the host app lost it"},
        headers=api.admin(),
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    again = api.client.post(
        f"/admin/webhook-deliveries/{delivery['id']}/resend",
        json={"reason": "twice"},
        headers=api.admin(),
    )
    assert_error(again, 409, "invalid_state")  # already queued
    assert deliver(api, clock) == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    Webhook(hook["secret"]).verify(second.body, second.headers)
    (resent,) = deliveries(api)
    assert resent["status"] == "succeeded" and len(resent["attempt_log"]) == 2
    (entry,) = audit(api, "webhook_delivery.resend")
    assert entry["reason"] == "the host app lost it" and entry["subject_id"] == delivery["id"]
    for body, status, code in (
        ({}, 422, "validation_error"),  # a reason is required
        ({"reason": ""}, 422, "validation_error"),
        ({"reason": "x" * 501}, 422, "validation_error"),
    ):
        response = api.client.post(
            f"/admin/webhook-deliveries/{delivery['id']}/resend", json=body, headers=api.admin()
        )
        assert_error(response, status, code)
    missing = api.client.post(
        "/admin/webhook-deliveries/whd_00000000000000000000/resend",
        json={"reason": "x"},
        headers=api.admin(),
    )
    assert_error(missing, 404, "not_found")
    assert len(audit(api, "webhook_delivery.resend")) == 1


def test_the_job_runs_from_the_background_schedule(api: Api, receiver: Receiver) -> None:
    register(api, receiver.url, ["payment.updated"])
    paid_topup(api, "alice")
    jobs = api.coffer.background()
    assert "webhooks.deliver" in jobs.names
    assert jobs.run_now("webhooks.deliver") == 1
    assert deliveries(api)[0]["status"] == "succeeded"


def test_runs_side_by_side_send_each_delivery_once(api: Api, receiver: Receiver) -> None:
    clock = use_clock(api)
    register(api, receiver.url, ["payment.updated"])
    register(api, receiver.url + "/second", ["payment.updated"])
    for n in range(6):
        paid_topup(api, f"user{n}")
    start = threading.Barrier(3)

    def run(_: int) -> int:
        start.wait()
        return deliver(api, clock)

    with ThreadPoolExecutor(3) as pool:
        made = sum(pool.map(run, range(3)))
    while (more := deliver(api, clock)) > 0:  # a run that lost a claim leaves it to the next
        made += more
    sent = [(r.path, r.headers["webhook-id"]) for r in receiver.received]
    assert made == len(sent) == len(set(sent)) == 12
    assert {d["status"] for d in deliveries(api)} == {"succeeded"}


def test_a_redirect_is_not_followed(api: Api, receiver: Receiver) -> None:
    clock = use_clock(api)
    register(api, receiver.url, ["payment.updated"])
    receiver.answer((302, {"Location": "http://169.254.169.254/latest/meta-data"}))
    paid_topup(api, "alice")
    assert deliver(api, clock) == 1
    assert len(receiver.received) == 1
    (delivery,) = deliveries(api)
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 302


def test_figures_count_first_attempts_over_a_range(api: Api, receiver: Receiver) -> None:
    clock = use_clock(api)
    start = clock()
    register(api, receiver.url, ["payment.updated"])
    receiver.answer((500, {}))
    paid_topup(api, "alice")
    paid_topup(api, "bob")
    assert deliver(api, clock) == 1  # a 500: the endpoint's next delivery waits (slow down)
    clock.advance(seconds=schedule.SLOW_DOWN_S + 1)
    assert deliver(api, clock) == 2  # the retry and the one that waited: 200 each
    with api.database.read() as session:
        made = outbound.figures(session, start=start, end=clock() + timedelta(seconds=1))
        before = outbound.figures(session, start=start - timedelta(hours=1), end=start)
    assert (made.attempts, made.failed_attempts) == (3, 1)
    assert (made.first_attempts, made.first_attempts_succeeded) == (2, 1)
    assert made.first_attempt_rate == 0.5
    assert before.attempts == 0 and before.first_attempt_rate is None
    logs = [d["attempt_log"] for d in deliveries(api)]
    assert sorted(len(log) for log in logs) == [1, 2]
