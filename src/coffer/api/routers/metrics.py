"""`GET /metrics` (admin key): Coffer's figures in the Prometheus text format.

Under `coffer serve --workers N` (PROMETHEUS_MULTIPROC_DIR set, see cli.py) the answer adds up
every process's files with prometheus_client's `MultiProcessCollector`, whichever worker the
scrape reaches; in one process it is the default registry (the tests' case).

The payment success rate is a gauge computed here, at scrape time, over the last
`PAYMENT_WINDOW_S` of payment orders (`payments/figures.py`: one bounded aggregate on the
`(status, created_at)` index; orders still open or abandoned are left out). Counters of settled
orders for Prometheus to divide would have needed a hook in every path that settles an order
(verify, webhooks, reconciliation, in every process); the window needs none, and a restart
cannot reset it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of
from coffer.payments import figures

router = APIRouter(tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED))

PAYMENT_WINDOW_S = 3_600
MULTIPROC_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


class _Forward(Collector):
    """Another registry's metrics, as one collector of the scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


class _PaymentWindow(Collector):
    def __init__(self, outcomes: figures.Outcomes) -> None:
        self._outcomes = outcomes

    def collect(self) -> Iterator[Metric]:
        window = f"{PAYMENT_WINDOW_S}s"
        orders = GaugeMetricFamily(
            "coffer_payment_orders_recent",
            "Payment orders created in the last window that reached an outcome, by outcome.",
            labels=["outcome", "window"],
        )
        orders.add_metric(["succeeded", window], self._outcomes.succeeded)
        orders.add_metric(["failed", window], self._outcomes.failed)
        yield orders
        rate = self._outcomes.success_rate
        ratio = GaugeMetricFamily(
            "coffer_payment_success_ratio",
            "Succeeded / (succeeded + failed) over the last window; absent without orders.",
            labels=["window"],
        )
        if rate is not None:
            ratio.add_metric([window], rate)
        yield ratio


def multiprocess_dir() -> str | None:
    for name in MULTIPROC_DIR_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def scrape(_: AdminPrincipal, database: DatabaseDep, request: Request) -> Response:
    now = clock_of(request)()
    with database.read() as session:
        outcomes = figures.outcomes(
            session, start=now - timedelta(seconds=PAYMENT_WINDOW_S), end=now
        )
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        # Registers itself on `registry` (prometheus_client leaves this one unannotated).
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(_PaymentWindow(outcomes))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
