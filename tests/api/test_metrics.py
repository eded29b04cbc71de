"""`GET /metrics` (issue 11, item 7): the figures count what the requests did; admin key only.

The instruments are process-wide (one registry for every app a test process builds), so these
tests compare a scrape after the requests with one before; the payment window is read from the
database, which each test starts empty.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from coffer import metrics
from tests.api.harness import Api, assert_error, bearer
from tests.payments.helpers import paid_topup, topup, webhook

Samples = Counter[tuple[str, frozenset[tuple[str, str]]]]
ROOT = "http://testserver"


def scrape(api: Api, url: str = "/metrics") -> Samples:
    response = api.client.get(url, headers=api.admin())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples[(name, frozenset(labels.items()))]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def requests(samples: Samples, route: str, method: str, status: int) -> float:
    return value(
        samples,
        "coffer_http_requests_total",
        route=route,
        method=method,
        status=str(status),
    )


def test_metrics_count_requests_batches_webhooks_and_payments(api: Api) -> None:
    before = scrape(api)
    user = api.client.put("/users/host", json={"display_name": "Host"}, headers=api.service())
    assert user.status_code == 200, user.text
    paid_topup(api, "alice", package_id="popular")  # a top-up and its verify: succeeded
    gift = api.client.post(
        "/wallet/send-gift",
        json={"receiver_id": "host", "diamonds": 10},
        headers={**api.user("alice"), "Idempotency-Key": "metrics-gift-1"},
    )
    assert gift.status_code == 201, gift.text
    # A second order fails through a signed webhook: the inbox processes it.
    failing = topup(api, "bob", package_id="basic")
    failed = webhook(
        api,
        "payment.failed",
        provider_order_id=failing["provider_order_id"],
        amount=failing["amount"],
        currency=failing["currency"],
        failure_reason="card_declined",
        event_id="metrics_evt_1",
    )
    assert failed.status_code == 200, failed.text
    assert api.client.get("/no/such/route/abc123").status_code == 404
    after = scrape(api)

    def delta(route: str, method: str, status: int) -> float:
        return requests(after, route, method, status) - requests(before, route, method, status)

    assert delta("/api/v1/wallet/topup", "POST", 201) == 2
    assert delta("/api/v1/wallet/verify", "POST", 200) == 1
    assert delta("/api/v1/wallet/send-gift", "POST", 201) == 1
    assert delta("/api/v1/webhooks/{provider}", "POST", 200) == 1
    # Labelled by template, never by the raw path; unknown paths share one fixed label.
    assert delta("/api/v1/users/{user_id}", "PUT", 200) == 1
    assert not any("host" in dict(labels).get("route", "") for _, labels in after)
    assert delta(metrics.UNMATCHED_ROUTE, "GET", 404) == 1
    assert not any("abc123" in dict(labels).get("route", "") for _, labels in after)
    # The scrape before this one is counted too, and its latency observed.
    assert delta("/api/v1/metrics", "GET", 200) == 1
    duration = "coffer_http_request_duration_seconds_count"
    route = {"route": "/api/v1/wallet/send-gift", "method": "POST"}
    assert value(after, duration, **route) - value(before, duration, **route) == 1

    # The verify's credit and the gift went through the writer: batches were observed, each of
    # at least one unit, in some time.
    batches = value(after, "coffer_writer_batch_size_count") - value(
        before, "coffer_writer_batch_size_count"
    )
    units = value(after, "coffer_writer_batch_size_sum") - value(
        before, "coffer_writer_batch_size_sum"
    )
    assert batches >= 2 and units >= batches
    commits = "coffer_writer_commit_duration_seconds_count"
    assert value(after, commits) - value(before, commits) == batches

    lag = "coffer_webhook_inbox_lag_seconds_count"
    assert value(after, lag, provider="mock") - value(before, lag, provider="mock") == 1

    # One order succeeded and one failed in the window: the rate is a half.
    assert value(after, "coffer_payment_orders_recent", outcome="succeeded", window="3600s") == 1
    assert value(after, "coffer_payment_orders_recent", outcome="failed", window="3600s") == 1
    assert value(after, "coffer_payment_success_ratio", window="3600s") == 0.5


def test_the_success_ratio_is_absent_without_orders(api: Api) -> None:
    samples = scrape(api)
    assert total(samples, "coffer_payment_orders_recent") == 0
    assert not any(name == "coffer_payment_success_ratio" for name, _ in samples)


def test_metrics_are_served_at_the_root_too(api: Api) -> None:
    samples = scrape(api, f"{ROOT}/metrics")
    assert total(samples, "coffer_http_requests_total") >= 1


def test_metrics_need_the_admin_key(api: Api) -> None:
    for url in ("/metrics", f"{ROOT}/metrics"):
        assert_error(api.client.get(url), 401, "unauthenticated")
        assert_error(api.client.get(url, headers=bearer("nope")), 401, "unauthenticated")
        assert_error(api.client.get(url, headers=api.user("alice")), 403, "forbidden")
        assert_error(api.client.get(url, headers=api.service()), 403, "forbidden")


def test_refused_and_failed_requests_are_counted(api: Api) -> None:
    before = scrape(api)
    refused = api.client.get("/wallet/balance", params={"x": "a\x00b"}, headers=api.user("a"))
    assert refused.status_code == 422
    odd: Any = api.client.request("BREW", "/healthz")
    assert odd.status_code == 405
    after = scrape(api)
    assert (
        requests(after, metrics.UNMATCHED_ROUTE, "GET", 422)
        - requests(before, metrics.UNMATCHED_ROUTE, "GET", 422)
        == 1
    )
    # A method nobody routes is one fixed label, whatever a client sends.
    assert (
        requests(after, "/api/v1/healthz", metrics.OTHER_METHOD, 405)
        - requests(before, "/api/v1/healthz", metrics.OTHER_METHOD, 405)
        == 1
    )


def test_delivery_failure_reasons_are_bounded() -> None:
    reason = metrics.delivery_failure_reason
    assert reason(status_code=500, error="HTTP 500") == "http_5xx"
    assert reason(status_code=404, error="HTTP 404") == "http_4xx"
    assert reason(status_code=302, error="HTTP 302") == "http_3xx"
    assert reason(status_code=999, error="HTTP 999") == "http_5xx"
    assert reason(status_code=None, error="timed out (ReadTimeout)") == "timeout"
    assert reason(status_code=None, error="refused: private address") == "refused"
    assert reason(status_code=None, error="ConnectError: boom") == "network"
    assert {reason(status_code=code, error=None) for code in range(100, 1000)} <= set(
        metrics.DELIVERY_FAILURE_REASONS
    )


def test_a_second_app_in_the_process_registers_nothing_twice(api: Api) -> None:
    from tests.api.harness import make_api

    with make_api(api.database) as again:
        assert total(scrape(again), "coffer_http_requests_total") >= 1
    assert total(scrape(api), "coffer_http_requests_total") >= 1
