"""Stripe's webhooks for `StripeProvider`: the signature, then what each event means.

`Stripe-Signature` is checked on the raw bytes with a 300 s tolerance either way
(`signatures.verify_stripe`; stricter than the SDK, which accepts any future timestamp).
`payment_intent.payment_failed` is not final: the customer may retry and the same PaymentIntent
may still succeed, so a later PAYMENT_SUCCEEDED must win over it. Refunds carry Coffer's refund
id in `metadata.coffer_refund_id`, echoed back as the event's `reference`; `charge.refunded` is
acted on only when its newest listed refund succeeded (refund.* events carry the rest), and
`charge.dispute.*` become DISPUTE_OPENED / WON / LOST by the dispute's status. Billing events are
`stripe_billing`'s, `account.*` and `transfer.*` `stripe_connect`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coffer.errors import BadRequest, ProviderDisabled
from coffer.providers import signatures
from coffer.providers._common import (
    check_body_size,
    from_unix,
    header,
    load_event,
    optional_int,
    optional_str,
    upper,
)
from coffer.providers.base import EventKind, WebhookEvent
from coffer.providers.stripe_billing import is_billing_event, translate_billing_event
from coffer.providers.stripe_connect import connect_event

NAME = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"
REFUND_REFERENCE_KEY = "coffer_refund_id"  # Coffer's refund id, in the refund's metadata

EVENT_KINDS: Mapping[str, EventKind] = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,  # not final: see above
    "payment_intent.processing": EventKind.PAYMENT_PROCESSING,
    "payment_intent.canceled": EventKind.PAYMENT_CANCELLED,
    "charge.refunded": EventKind.REFUND_SUCCEEDED,  # only for a listed, succeeded refund
    "refund.failed": EventKind.REFUND_FAILED,
    "charge.dispute.created": EventKind.DISPUTE_OPENED,
    "payout.paid": EventKind.PAYOUT_PAID,
    "payout.failed": EventKind.PAYOUT_FAILED,
    "payout.canceled": EventKind.PAYOUT_FAILED,
}
# Events whose meaning is in the object's status rather than in their name.
REFUND_EVENT_KINDS: Mapping[str, EventKind] = {
    "succeeded": EventKind.REFUND_SUCCEEDED,
    "failed": EventKind.REFUND_FAILED,
    "canceled": EventKind.REFUND_FAILED,
}
# charge.dispute.updated / closed: what the dispute's status says. An inquiry closed without a
# chargeback (warning_closed) releases what was held, as a won dispute does.
DISPUTE_EVENT_KINDS: Mapping[str, EventKind] = {
    "warning_needs_response": EventKind.DISPUTE_OPENED,
    "warning_under_review": EventKind.DISPUTE_OPENED,
    "needs_response": EventKind.DISPUTE_OPENED,
    "under_review": EventKind.DISPUTE_OPENED,
    "won": EventKind.DISPUTE_WON,
    "warning_closed": EventKind.DISPUTE_WON,
    "lost": EventKind.DISPUTE_LOST,
}
PAYOUT_EVENT_KINDS: Mapping[str, EventKind] = {
    "in_transit": EventKind.PAYOUT_PROCESSING,
    "paid": EventKind.PAYOUT_PAID,
    "failed": EventKind.PAYOUT_FAILED,
    "canceled": EventKind.PAYOUT_FAILED,
}


def parse_webhook(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    tolerance_s: int,
    clock_s: Callable[[], float] | None,
) -> WebhookEvent:
    """Verify a delivery's signature with `secret` (None: webhooks are off), then translate it."""
    if secret is None:
        raise ProviderDisabled(
            "Stripe webhooks are off: COFFER_STRIPE_WEBHOOK_SECRET is not set",
            missing=["COFFER_STRIPE_WEBHOOK_SECRET"],
        )
    check_body_size(body)
    signatures.verify_stripe(
        body,
        header=header(headers, SIGNATURE_HEADER),
        secret=secret,
        tolerance_s=tolerance_s,
        now_s=clock_s() if clock_s else None,
    )
    event = load_event(body)
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise BadRequest("the Stripe event has no id or type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    translate = translate_billing_event if is_billing_event(event_type) else _translate
    return translate(
        event_id=event_id,
        event_type=event_type,
        created=event.get("created"),
        obj=obj if isinstance(obj, dict) else {},
        event=event,
    )


def refund_reference(refund: Mapping[str, Any]) -> str | None:
    """Coffer's refund id, from the metadata it sent with the refund."""
    metadata = refund.get("metadata")
    return optional_str(metadata.get(REFUND_REFERENCE_KEY)) if isinstance(metadata, dict) else None


def _translate(
    *, event_id: str, event_type: str, created: Any, obj: dict[str, Any], event: dict[str, Any]
) -> WebhookEvent:
    kind = EVENT_KINDS.get(event_type, EventKind.IGNORED)
    fields: dict[str, Any] = {}
    status = obj.get("status")
    if event_type.startswith("payment_intent."):
        if obj.get("invoice"):
            kind = EventKind.IGNORED  # an invoice's (a subscription's): see stripe_billing
        error = obj.get("last_payment_error")
        error = error if isinstance(error, dict) else {}
        succeeded = event_type == "payment_intent.succeeded"
        fields = {
            "provider_order_id": optional_str(obj.get("id")),
            "payment_id": optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount_received" if succeeded else "amount")),
            "currency": upper(obj.get("currency")),
            "failure_reason": optional_str(error.get("message"))
            or optional_str(error.get("code"))
            or optional_str(obj.get("cancellation_reason")),
        }
    elif event_type == "charge.refunded":
        # The charge's refunds list is only sent by older API versions; when it is there the
        # newest refund is the one this event is about, and it is acted on only if that refund
        # itself succeeded (its amount is checked where it is applied). Without the list the
        # refund.* events carry each refund.
        refunds = obj.get("refunds")
        listed = refunds.get("data") if isinstance(refunds, dict) else None
        latest = listed[0] if isinstance(listed, list) and listed else {}
        latest = latest if isinstance(latest, dict) else {}
        if not latest or latest.get("status") != "succeeded":
            kind = EventKind.IGNORED
        fields = {
            "payment_id": optional_str(obj.get("payment_intent")),
            "refund_id": optional_str(latest.get("id")),
            "amount": optional_int(latest.get("amount")),
            "currency": upper(obj.get("currency")),
            "reference": refund_reference(latest),
        }
    elif event_type.startswith("charge.dispute."):
        if event_type in ("charge.dispute.updated", "charge.dispute.closed"):
            kind = DISPUTE_EVENT_KINDS.get(str(status), EventKind.IGNORED)
        elif event_type != "charge.dispute.created":
            kind = EventKind.IGNORED  # funds_withdrawn / funds_reinstated follow the status
        fields = {
            "payment_id": optional_str(obj.get("payment_intent")),
            "dispute_id": optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount")),
            "currency": upper(obj.get("currency")),
            "failure_reason": optional_str(obj.get("reason")),
        }
    elif event_type.startswith("refund."):
        if event_type in ("refund.created", "refund.updated"):
            kind = REFUND_EVENT_KINDS.get(str(status), EventKind.IGNORED)
        fields = {
            "payment_id": optional_str(obj.get("payment_intent")),
            "refund_id": optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount")),
            "currency": upper(obj.get("currency")),
            "failure_reason": optional_str(obj.get("failure_reason")),
            "reference": refund_reference(obj),
        }
    elif event_type.startswith("payout."):
        if event_type in ("payout.created", "payout.updated"):
            kind = PAYOUT_EVENT_KINDS.get(str(status), EventKind.IGNORED)
        fields = {
            "payout_id": optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount")),
            "currency": upper(obj.get("currency")),
            "failure_reason": optional_str(obj.get("failure_message"))
            or optional_str(obj.get("failure_code")),
        }
    elif event_type.startswith(("transfer.", "account.")):
        kind, fields = connect_event(event_type, obj)
    return WebhookEvent(
        provider=NAME,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        occurred_at=from_unix(created),
        data=event,
        **fields,
    )


__all__ = [
    "EVENT_KINDS",
    "REFUND_REFERENCE_KEY",
    "SIGNATURE_HEADER",
    "parse_webhook",
    "refund_reference",
]
