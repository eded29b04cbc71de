"""Razorpay's webhooks for `RazorpayProvider`: the signature, the event's name and its meaning.

The signature (`X-Razorpay-Signature`) is checked on the raw bytes before anything is parsed;
the event is named for the inbox by what that signature covers (its type, time and entity ids),
not by the unsigned `X-Razorpay-Event-Id` header. Razorpay may send `payment.failed` and later
`payment.captured` for the same payment (a late authorisation): a PAYMENT_FAILED from Razorpay
is therefore not final, and whoever applies events must let a later PAYMENT_SUCCEEDED win over
it. Refunds carry Coffer's refund id in `notes.coffer_refund_id`; `payment.dispute.*` become
DISPUTE_OPENED / WON / LOST (`closed` is lost when Razorpay deducted an amount, else released).
`subscription.*` events are `razorpay_billing`'s, payouts' references `razorpay_payouts`'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
from coffer.providers.razorpay_billing import translate_subscription_event
from coffer.providers.razorpay_payouts import payout_failure, payout_reference

NAME = "razorpay"
SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "X-Razorpay-Event-Id"
REFUND_REFERENCE_NOTE = "coffer_refund_id"  # Coffer's refund id, in the refund's notes

EVENT_KINDS: Mapping[str, EventKind] = {
    "payment.authorized": EventKind.PAYMENT_PROCESSING,
    "payment.captured": EventKind.PAYMENT_SUCCEEDED,
    "order.paid": EventKind.PAYMENT_SUCCEEDED,
    "payment.failed": EventKind.PAYMENT_FAILED,  # not final: see the module docstring
    "refund.processed": EventKind.REFUND_SUCCEEDED,
    "refund.failed": EventKind.REFUND_FAILED,
    "payment.dispute.created": EventKind.DISPUTE_OPENED,
    "payment.dispute.under_review": EventKind.DISPUTE_OPENED,
    "payment.dispute.action_required": EventKind.DISPUTE_OPENED,
    "payment.dispute.won": EventKind.DISPUTE_WON,
    "payment.dispute.lost": EventKind.DISPUTE_LOST,
    # payment.dispute.closed: lost if Razorpay deducted anything, else released (see _translate)
    "payout.initiated": EventKind.PAYOUT_PROCESSING,
    "payout.processed": EventKind.PAYOUT_PAID,
    "payout.failed": EventKind.PAYOUT_FAILED,
    "payout.rejected": EventKind.PAYOUT_FAILED,
    "payout.reversed": EventKind.PAYOUT_REVERSED,
}


def parse_webhook(*, body: bytes, headers: Mapping[str, str], secret: str | None) -> WebhookEvent:
    """Verify a delivery's signature with `secret` (None: webhooks are off), then translate it."""
    if secret is None:
        raise ProviderDisabled(
            "Razorpay webhooks are off: COFFER_RAZORPAY_WEBHOOK_SECRET is not set",
            missing=["COFFER_RAZORPAY_WEBHOOK_SECRET"],
        )
    check_body_size(body)
    signatures.verify_razorpay_webhook(
        body, signature=header(headers, SIGNATURE_HEADER), secret=secret
    )
    event = load_event(body)
    event_type = event.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise BadRequest("the Razorpay event has no type")
    payload = event.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    event_id = _event_id(event_type, event, payload, body)
    if event_type.startswith("subscription."):
        return translate_subscription_event(
            event_type=event_type,
            event_id=event_id,
            occurred_at=event.get("created_at"),
            subscription=_entity(payload, "subscription"),
            payment=_entity(payload, "payment"),
            event=event,
        )
    return _translate(
        event_type=event_type,
        event_id=event_id,
        occurred_at=event.get("created_at"),
        payment=_entity(payload, "payment"),
        order=_entity(payload, "order"),
        refund=_entity(payload, "refund"),
        payout=_entity(payload, "payout"),
        dispute=_entity(payload, "dispute"),
        event=event,
    )


def refund_reference(refund: Mapping[str, Any]) -> str | None:
    """Coffer's refund id, from the notes it sent with the refund."""
    notes = refund.get("notes")
    return optional_str(notes.get(REFUND_REFERENCE_NOTE)) if isinstance(notes, dict) else None


def _translate(
    *,
    event_type: str,
    event_id: str,
    occurred_at: Any,
    payment: dict[str, Any],
    order: dict[str, Any],
    refund: dict[str, Any],
    payout: dict[str, Any],
    dispute: dict[str, Any],
    event: dict[str, Any],
) -> WebhookEvent:
    kind = EVENT_KINDS.get(event_type, EventKind.IGNORED)
    fields: dict[str, Any] = {}
    if event_type.startswith("payment.dispute."):
        if event_type == "payment.dispute.closed":
            deducted = optional_int(dispute.get("amount_deducted")) or 0
            kind = EventKind.DISPUTE_LOST if deducted else EventKind.DISPUTE_WON
        fields = {
            "payment_id": optional_str(dispute.get("payment_id"))
            or optional_str(payment.get("id")),
            "dispute_id": optional_str(dispute.get("id")),
            "amount": optional_int(dispute.get("amount")),
            "currency": upper(dispute.get("currency")),
            "failure_reason": optional_str(dispute.get("reason_code"))
            or optional_str(dispute.get("reason_description")),
        }
    elif event_type.startswith(("payment.", "order.")):
        if payment.get("invoice_id"):
            kind = EventKind.IGNORED  # a subscription cycle's payment: see razorpay_billing
        fields = {
            "provider_order_id": optional_str(payment.get("order_id"))
            or optional_str(order.get("id")),
            "payment_id": optional_str(payment.get("id")),
            "amount": optional_int(payment.get("amount")),
            "currency": upper(payment.get("currency")),
            "failure_reason": optional_str(payment.get("error_description"))
            or optional_str(payment.get("error_reason")),
        }
    elif event_type.startswith("refund."):
        fields = {
            "payment_id": optional_str(refund.get("payment_id")),
            "refund_id": optional_str(refund.get("id")),
            "amount": optional_int(refund.get("amount")),
            "currency": upper(refund.get("currency")),
            "reference": refund_reference(refund),
        }
    elif event_type.startswith("payout."):
        fields = {
            "payout_id": optional_str(payout.get("id")),
            "amount": optional_int(payout.get("amount")),
            "currency": upper(payout.get("currency")),
            "failure_reason": payout_failure(payout),
            "reference": payout_reference(payout),
        }
    return WebhookEvent(
        provider=NAME,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        occurred_at=from_unix(occurred_at),
        data=event,
        **fields,
    )


def _event_id(
    event_type: str, event: Mapping[str, Any], payload: Mapping[str, Any], body: bytes
) -> str:
    """The inbox's name for an event, from what the signature covers.

    Not `X-Razorpay-Event-Id`: the signature does not cover headers, so anyone replaying a
    signed body under a new header value would have it processed again. The event's own type,
    time and entity ids name it however Razorpay serialises a redelivery; a body without entity
    ids is named by its bytes.
    """
    ids = sorted(
        f"{name}={entity['id']}"
        for name, wrapper in payload.items()
        if isinstance(wrapper, dict)
        and isinstance(entity := wrapper.get("entity"), dict)
        and isinstance(entity.get("id"), str)
        and entity["id"]
    )
    if not ids:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    created_at = event.get("created_at")
    named = "|".join([event_type, str(created_at if type(created_at) is int else ""), *ids])
    return "rzp:" + hashlib.sha256(named.encode("utf-8")).hexdigest()


def _entity(payload: dict[str, Any], name: str) -> dict[str, Any]:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else {}


__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_KINDS",
    "REFUND_REFERENCE_NOTE",
    "SIGNATURE_HEADER",
    "parse_webhook",
    "refund_reference",
]
