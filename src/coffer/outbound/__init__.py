"""Outbound webhooks: Coffer's own events, delivered to the host app's endpoints.

Endpoints pick event types; every outbox event of those types becomes a delivery, signed by the
Standard Webhooks scheme (`signing.py`), retried on the spec's example schedule with jitter
(`schedule.py`), logged attempt by attempt; a `410 Gone` disables the endpoint, a 429 or 5xx
slows it down. URLs are checked against SSRF (`urls.py`). The job is `tasks.deliver_due`.
"""

from coffer.outbound import schedule, signing, urls
from coffer.outbound.figures import Figures, figures
from coffer.outbound.results import record_attempt
from coffer.outbound.service import (
    ALL_EVENTS,
    ENDPOINT_STATUSES,
    STATUSES,
    Attempt,
    Delivery,
    Endpoint,
    Outcome,
    create_endpoint,
    get_delivery,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    recover,
    resend,
    rotate_secret,
)
from coffer.outbound.tasks import deliver_due

__all__ = [
    "ALL_EVENTS",
    "ENDPOINT_STATUSES",
    "STATUSES",
    "Attempt",
    "Delivery",
    "Endpoint",
    "Figures",
    "Outcome",
    "create_endpoint",
    "deliver_due",
    "figures",
    "get_delivery",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "record_attempt",
    "recover",
    "resend",
    "rotate_secret",
    "schedule",
    "signing",
    "urls",
]
