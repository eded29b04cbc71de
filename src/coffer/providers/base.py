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
    PAYOUT_CANCELLED = "payout.cancelled"
    # A payee's standing at the provider changed (Stripe `account.updated`).
    PAYEE_UPDATED = "payee.updated"
    # Recurring billing: a period was charged (Razorpay `subscription.charged`, Stripe
    # `invoice.paid`), a charge failed (the provider retries it), the provider ended it.
    SUBSCRIPTION_CHARGED = "subscription.charged"
    SUBSCRIPTION_PAYMENT_FAILED = "subscription.payment_failed"
    SUBSCRIPTION_CANCELLED = "subscription.cancelled"
    SUBSCRIPTION_HALTED = "subscription.halted"  # the provider gave up retrying: expired
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
    payee_id: str | None = None  # PAYEE_UPDATED: the provider's account id
    payee_status: str | None = None  # PAYEE_UPDATED: "pending" | "active" | "rejected"
    requirements: tuple[str, ...] = ()  # PAYEE_UPDATED: what the provider still wants
    # Recurring billing: the provider's subscription, and the period a charge paid for (Unix
    # seconds, as the providers send them).
    subscription_id: str | None = None
    period_start_unix: int | None = None
    period_end_unix: int | None = None


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
    status: str  # "pending" | "processing" | "paid" | "failed" | "cancelled" | "reversed"
    failure_reason: str | None = None
    reference: str | None = None  # Coffer's payout id, when the provider echoes it


PAYEE_STATUSES = ("pending", "active", "rejected")
PAYOUT_STATUSES = ("pending", "processing", "paid", "failed", "cancelled", "reversed")


@dataclass(frozen=True, slots=True)
class PayeeRequest:
    """Where a user wants to be paid. `destination` is checked by the caller's schema:
    `{"type": "bank_account", "name", "ifsc", "account_number"}`, `{"type": "vpa", "address"}`
    or `{"type": "stripe_account", "country"?, "email"?}`."""

    user_id: str  # Coffer's user id: the provider's reference for the contact or account
    name: str  # the account holder's name, for the provider's contact
    destination: Mapping[str, Any]
    return_url: str | None = None  # Stripe onboarding: where the user comes back to


@dataclass(frozen=True, slots=True)
class ProviderPayee:
    """A payout destination as the provider holds it."""

    account_id: str  # RazorpayX fund account, Stripe connected account, mock destination id
    status: str  # "pending" | "active" | "rejected"
    contact_id: str | None = None  # RazorpayX contact
    onboarding_url: str | None = None  # Stripe AccountLink: one-time, expires within minutes
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PayeePayoutRequest:
    """Pay `amount` (minor units of `currency`) to a payee the provider made."""

    # Coffer's payout id, `_{attempt}` after it when retried; echoed back as the reference.
    payout_id: str
    idempotency_key: str  # the same: a retry must not be answered the failed attempt
    account_id: str  # `ProviderPayee.account_id`
    amount: int
    currency: str
    destination_type: str  # "bank_account" | "vpa" | "stripe_account"
    description: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    subscription_id: str  # Coffer's subscription id; sent along as notes / metadata
    plan_id: str  # Coffer's plan id
    plan_name: str
    interval: str  # "month" | "year"
    amount: int  # minor units, each period
    currency: str  # ISO 4217, upper case
    customer_id: str  # Coffer's user id


@dataclass(frozen=True, slots=True)
class ProviderSubscription:
    provider: str
    provider_subscription_id: str  # Razorpay sub_..., Stripe sub_..., mock_sub_...
    status: str  # the provider's own word ("created", "incomplete", "active", "cancelled"...)
    # What the client needs to authorise the recurring payment: Razorpay {"key_id",
    # "subscription_id"}, Stripe {"client_secret", "publishable_key"}, mock {"subscription_id"}.
    checkout: Mapping[str, Any] = field(default_factory=dict)
    customer_id: str | None = None  # the provider's customer (Stripe cus_...)
    cancel_at_period_end: bool = False


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

    def create_payee(self, request: PayeeRequest) -> ProviderPayee:
        """Make (or find again: the same request answers the same payee) a payout destination."""
        ...

    def create_payout(self, request: PayeePayoutRequest) -> ProviderPayout:
        """Pay a payee; idempotent on `request.idempotency_key`."""
        ...

    def fetch_payout(self, *, payout_id: str) -> ProviderPayout:
        """A payout (the provider's id) as it stands now."""
        ...

    def create_subscription(self, request: SubscriptionRequest) -> ProviderSubscription:
        """Start recurring billing for a plan; the client then authorises the first charge."""
        ...

    def cancel_subscription(self, *, provider_subscription_id: str) -> ProviderSubscription:
        """Stop charging at the end of the paid period (nothing is refunded)."""
        ...
