"""One interface for every payment provider: provider-neutral data in, provider-neutral data out.

Amounts are integers in the currency's minor units everywhere here; an adapter converts to its
provider's units inside itself and nowhere else. Adapters raise only these errors (mapping the
SDK's at the boundary, `raise ... from exc`):

    coffer.errors.InvalidSignature     a client confirmation or webhook failed its signature check
    coffer.errors.ProviderUnavailable  network trouble, timeouts, 5xx, rate limits: retry later
    coffer.errors.ProviderRejected     the provider answered no (bad request, declined, unknown id)
    coffer.errors.ProviderDisabled     the provider has no keys configured
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

OUTBOUND_TIMEOUT_S = 10.0  # every call to a provider has this timeout unless configured
OUTBOUND_ATTEMPTS_MAX = 3


class EventKind(enum.StrEnum):
    """What a provider's webhook means for Coffer, whatever the provider called it."""

    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_PROCESSING = "payment.processing"
    PAYMENT_CANCELLED = "payment.cancelled"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    # A chargeback: opened (money held by the provider), then won (released) or lost (taken).
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"
    PAYOUT_PROCESSING = "payout.processing"
    PAYOUT_PAID = "payout.paid"
    PAYOUT_FAILED = "payout.failed"
    PAYOUT_REVERSED = "payout.reversed"
    IGNORED = "ignored"  # a genuine, well-signed event Coffer does not act on


@dataclass(frozen=True, slots=True)
class OrderRequest:
    order_id: str  # Coffer's payment order id; sent to the provider as receipt / metadata
    amount: int  # minor units
    currency: str  # ISO 4217, upper case
    description: str = ""
    customer_id: str | None = None  # Coffer's user id, for the provider's records
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderOrder:
    provider: str
    provider_order_id: str  # Razorpay order id, Stripe PaymentIntent id, mock order id
    amount: int
    currency: str
    # What the client needs to pay: Razorpay {"key_id", "order_id"}, Stripe {"client_secret",
    # "publishable_key"}, mock {"payment_id", "signature"} (a sandbox that pays at once).
    checkout: Mapping[str, Any]
    status: str = "created"


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    refund_id: str
    payment_id: str
    amount: int
    currency: str
    status: str  # "pending" | "succeeded" | "failed"
    reference: str | None = None  # Coffer's refund id, when Coffer started it (metadata/notes)


@dataclass(frozen=True, slots=True)
class PaymentConfirmation:
    """A payment the provider confirms as captured/succeeded for an order."""

    provider_order_id: str
    payment_id: str
    amount: int
    currency: str
    # Refunds the provider already made of it (a dashboard refund before the client verified).
    refunds: tuple[ProviderRefund, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    provider: str
    event_id: str  # unique per provider: the inbox's key against replays
    kind: EventKind
    provider_type: str  # the provider's own event name, e.g. "payment.captured"
    occurred_at: datetime | None = None
    provider_order_id: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    payout_id: str | None = None
    amount: int | None = None  # minor units
    currency: str | None = None
    failure_reason: str | None = None
    dispute_id: str | None = None  # the provider's dispute (chargeback) id
    reference: str | None = None  # Coffer's own id the provider echoes (a refund's metadata)
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    payout_id: str  # Coffer's payout id; the provider's idempotency key is derived from it
    amount: int
    currency: str
    destination: Mapping[str, Any]  # {"type": "bank_account", ...} or {"type": "vpa", ...}
    description: str = ""


@dataclass(frozen=True, slots=True)
class ProviderPayout:
    payout_id: str  # the provider's id
    amount: int
    currency: str
    status: str  # "pending" | "processing" | "paid" | "failed" | "reversed"
    failure_reason: str | None = None


@runtime_checkable
class Provider(Protocol):
    """A payment provider as Coffer sees it."""

    name: str

    def public_config(self) -> Mapping[str, Any]:
        """What a client may know: Razorpay key_id, Stripe publishable key; never a secret."""
        ...

    def create_order(self, request: OrderRequest) -> ProviderOrder:
        """Open an order (Razorpay order, Stripe PaymentIntent) the client will pay."""
        ...

    def verify_payment(
        self, *, provider_order_id: str, payment_id: str, signature: str, amount: int, currency: str
    ) -> PaymentConfirmation:
        """Check the client's proof of payment for an order; raise InvalidSignature if false."""
        ...

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the signature on the raw body, then translate the event."""
        ...

    def refund(
        self, *, payment_id: str, amount: int, currency: str, idempotency_key: str, reason: str
    ) -> ProviderRefund:
        """Refund all or part of a captured payment (Coffer's refund id as `idempotency_key`,
        also sent along so the provider echoes it back as the refund's `reference`)."""
        ...

    def get_refund(self, *, refund_id: str, payment_id: str) -> ProviderRefund:
        """The provider's refund as it stands now."""
        ...

    def refunds_of_payment(self, *, payment_id: str) -> list[ProviderRefund]:
        """Every refund the provider holds for a payment, whoever made it."""
        ...

    def payout(self, request: PayoutRequest) -> ProviderPayout:
        """Send money out to a bank account or VPA."""
        ...
