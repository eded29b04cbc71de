"""Coffer's Prometheus instruments, defined once per process (`GET /metrics` shows them).

Every instrument lives here, at module level, so however many apps a process builds (the tests
build hundreds) each is registered once on prometheus_client's default registry: a second
`Counter("coffer_...")` would raise "Duplicated timeseries". The code that observes imports this
module; it imports nothing of Coffer's, so any layer may (it sits beside `kit`).

Labels are bounded by construction: a route is its template (`/api/v1/gifts/{gift_id}`, never
the raw path, which a client could vary without end), a method one of `METHODS` or `OTHER`, a
provider one of the configured providers, a failure reason one of `DELIVERY_FAILURE_REASONS`.

Under `coffer serve --workers N` every process writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen when it is first
imported, so `coffer serve` sets that variable before importing the app); the scrape adds up
every process's files (`api/metrics.py`). No instrument here is a Gauge: a gauge would need a
multiprocess aggregation mode, and the one figure that is a level (the payment success rate) is
computed at scrape time from the database instead.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `_created` series beside every counter and histogram: they double the exposition, and
# Prometheus does not need them to compute rates.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

# What a request's method label may be; anything else is "OTHER" (methods are client-chosen).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
# The route label of a request that matched no route (a 404 before routing, or refused first).
UNMATCHED_ROUTE = "unmatched"

http_requests = Counter(
    "coffer_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
http_request_duration = Histogram(
    "coffer_http_request_duration_seconds",
    "Time from a request's arrival at the app to the end of its answer, by route template.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

writer_batch_size = Histogram(
    "coffer_writer_batch_size",
    "Units of work committed together in one writer transaction (1 with group commit off).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
writer_commit_duration = Histogram(
    "coffer_writer_commit_duration_seconds",
    "Time a writer batch takes from BEGIN until its answers are known (retries included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

webhook_inbox_lag = Histogram(
    "coffer_webhook_inbox_lag_seconds",
    "Time from a provider webhook's receipt to its processing, by provider.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0),
)
webhook_inbox_retries = Counter(
    "coffer_webhook_inbox_retries",
    "Failed webhook processing attempts, by provider and what followed: a retry or parking.",
    ["provider", "outcome"],
)

DELIVERY_FAILURE_REASONS = ("http_3xx", "http_4xx", "http_5xx", "timeout", "network", "refused")
outbound_delivery_failures = Counter(
    "coffer_outbound_delivery_failures",
    "Outbound webhook deliveries not answered 2xx, by reason (status class or network error).",
    ["reason"],
)


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def delivery_failure_reason(*, status_code: int | None, error: str | None) -> str:
    """The bounded `reason` label of a failed delivery (see `outbound/tasks.py:send`)."""
    if status_code is not None:
        return f"http_{min(max(status_code // 100, 3), 5)}xx"
    text = error or ""
    if text.startswith("timed out"):
        return "timeout"
    if text.startswith("refused"):
        return "refused"
    return "network"


__all__ = [
    "DELIVERY_FAILURE_REASONS",
    "METHODS",
    "OTHER_METHOD",
    "UNMATCHED_ROUTE",
    "delivery_failure_reason",
    "http_request_duration",
    "http_requests",
    "method_label",
    "outbound_delivery_failures",
    "webhook_inbox_lag",
    "webhook_inbox_retries",
    "writer_batch_size",
    "writer_commit_duration",
]
