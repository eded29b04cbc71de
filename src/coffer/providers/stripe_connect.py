"""Stripe Connect payees and payouts for `StripeProvider` (a mixin: stripe.py is long enough).

A payee is an Express connected account (`POST /v1/accounts`, the `transfers` capability
requested, Coffer's user id in its metadata) and a one-time onboarding link to it
(`POST /v1/account_links`), which the user follows to give Stripe what it asks for. The
account is `pending` until Stripe's `account.updated` webhook says charges and payouts are
enabled (`active`) or that Stripe refused it (`requirements.disabled_reason` `rejected.*` or
`listed`: `rejected`).

A payout is a Transfer from the platform's balance to the connected account
(`POST /v1/transfers`, `Idempotency-Key` from the payout's id and attempt, Coffer's payout id in
`metadata.coffer_payout_id`); the account's own payout schedule takes it on to the bank. A
transfer is final when Stripe answers it, so it is `paid` at once; `transfer.reversed` (all of
it) makes it `reversed`. `GET /v1/transfers/{id}` tells the reconciler how one stands.

`payout` is the older Payout (`POST /v1/payouts`) from the platform's Stripe balance, or a
connected account's, to a bank account, its `Idempotency-Key` from Coffer's payout id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import stripe

from coffer.errors import ProviderRejected, ProviderUnavailable
from coffer.providers._common import (
    check_amount,
    check_currency,
    derived_key,
    optional_int,
    optional_str,
    upper,
)
from coffer.providers.base import (
    EventKind,
    PayeePayoutRequest,
    PayeeRequest,
    PayoutRequest,
    ProviderPayee,
    ProviderPayout,
)

PAYOUT_REFERENCE_KEY = "coffer_payout_id"
USER_REFERENCE_KEY = "coffer_user_id"
DEFAULT_COUNTRY = "US"
DEFAULT_RETURN_URL = "https://example.com/coffer/payees/return"
_IDEMPOTENCY_KEY = r"[\x21-\x7e]{1,255}"
REJECTED_REASONS = ("rejected.", "listed")
# A Payout's (`payout`) status in Coffer's words.
PAYOUT_STATUSES: Mapping[str, str] = {
    "pending": "pending",
    "in_transit": "processing",
    "paid": "paid",
    "failed": "failed",
    "canceled": "failed",
}


class StripeConnectPayouts:
    """The payee and payout half of `StripeProvider`; it supplies `_client` and `_call`."""

    _client: stripe.StripeClient

    def _call(self, request: Callable[[], Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def create_payee(self, request: PayeeRequest) -> ProviderPayee:
        destination = request.destination
        if destination.get("type") != "stripe_account":
            raise ProviderRejected("Stripe pays connected accounts only (stripe_account)")
        country = str(destination.get("country") or DEFAULT_COUNTRY).upper()
        params: dict[str, Any] = {
            "type": "express",
            "country": country,
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {USER_REFERENCE_KEY: request.user_id},
        }
        email = destination.get("email")
        if email:
            params["email"] = str(email)
        # The same request again (a retry, a lost answer) finds the same account.
        digest = hashlib.sha256(f"{request.user_id}|{country}|{email or ''}".encode()).hexdigest()
        account = self._call(
            lambda: self._client.v1.accounts.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"coffer-payee-{digest[:48]}"},
            )
        )
        account_id = _required(account, "id")
        return_url = request.return_url or DEFAULT_RETURN_URL
        link = self._call(
            lambda: self._client.v1.account_links.create(
                {
                    "account": account_id,
                    "refresh_url": return_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        )
        status, requirements = account_standing(account)
        return ProviderPayee(
            account_id=account_id,
            status=status,
            onboarding_url=optional_str(link.get("url")),
            requirements=requirements,
        )

    def create_payout(self, request: PayeePayoutRequest) -> ProviderPayout:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        if request.destination_type != "stripe_account":
            raise ProviderRejected("Stripe pays connected accounts only (stripe_account)")
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": request.account_id,
            "transfer_group": request.payout_id,
            "metadata": {PAYOUT_REFERENCE_KEY: request.payout_id},
        }
        if request.description:
            params["description"] = request.description[:1_000]
        key = derived_key(
            request.idempotency_key, pattern=_IDEMPOTENCY_KEY, length_max=255, prefix="coffer-pout-"
        )
        transfer = self._call(
            lambda: self._client.v1.transfers.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        )
        return provider_payout(transfer, amount=amount, currency=currency)

    def fetch_payout(self, *, payout_id: str) -> ProviderPayout:
        if not re.fullmatch(r"tr_[A-Za-z0-9]{1,64}", payout_id):
            raise ProviderRejected("not a Stripe transfer id", payout_id=payout_id[:64])
        return provider_payout(self._call(lambda: self._client.v1.transfers.retrieve(payout_id)))

    def payout(self, request: PayoutRequest) -> ProviderPayout:
        """A payout from the Stripe balance (or a connected account's) to a bank account.

        Destination: `{"type": "bank_account", "stripe_account"?: "acct_...",
        "external_account"?: "ba_..."}`; without them the platform's default bank account.
        """
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        destination = request.destination
        if destination.get("type") != "bank_account":
            raise ProviderRejected("Stripe pays out to bank accounts only")
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "metadata": {"payout_id": request.payout_id},
        }
        if request.description:
            params["description"] = request.description[:1_000]
        if destination.get("external_account"):
            params["destination"] = str(destination["external_account"])
        options: dict[str, Any] = {
            "idempotency_key": derived_key(
                f"coffer-payout-{request.payout_id}", pattern=_IDEMPOTENCY_KEY, length_max=255
            )
        }
        if destination.get("stripe_account"):
            options["stripe_account"] = str(destination["stripe_account"])
        payout = self._call(lambda: self._client.v1.payouts.create(params, options))  # type: ignore[arg-type]
        status = PAYOUT_STATUSES.get(str(payout.get("status")))
        if status is None:
            raise ProviderRejected("Stripe answered a payout in an unknown status")
        return ProviderPayout(
            payout_id=_required(payout, "id"),
            amount=optional_int(payout.get("amount")) or amount,
            currency=upper(payout.get("currency")) or currency,
            status=status,
            failure_reason=optional_str(payout.get("failure_message"))
            or optional_str(payout.get("failure_code")),
        )


def provider_payout(
    transfer: Mapping[str, Any], *, amount: int | None = None, currency: str | None = None
) -> ProviderPayout:
    """A Stripe Transfer in Coffer's words: paid once made, reversed when all of it came back."""
    found_amount = optional_int(transfer.get("amount")) or amount
    found_currency = upper(transfer.get("currency")) or currency
    if found_amount is None or found_currency is None:
        raise ProviderUnavailable("Stripe's transfer has no amount or currency")
    reversed_amount = optional_int(transfer.get("amount_reversed")) or 0
    fully_reversed = reversed_amount >= found_amount
    return ProviderPayout(
        payout_id=_required(transfer, "id"),
        amount=found_amount,
        currency=found_currency,
        status="reversed" if fully_reversed else "paid",
        failure_reason="the transfer was reversed" if fully_reversed else None,
        reference=_metadata(transfer, PAYOUT_REFERENCE_KEY),
    )


def account_standing(account: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """A connected account's payee status and what Stripe still asks for."""
    requirements = account.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}
    due: list[str] = []
    for name in ("past_due", "currently_due"):
        listed = requirements.get(name)
        if isinstance(listed, list):
            due += [str(item)[:100] for item in listed if isinstance(item, str)]
    reason = optional_str(requirements.get("disabled_reason"))
    if reason is not None and reason.startswith(REJECTED_REASONS):
        return "rejected", (reason[:100], *dict.fromkeys(due))
    if account.get("charges_enabled") is True and account.get("payouts_enabled") is True:
        return "active", ()
    return "pending", tuple(dict.fromkeys(due))


def connect_event(event_type: str, obj: Mapping[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """What `account.*` and `transfer.*` events mean for Coffer, and their fields."""
    if event_type == "account.updated":
        status, requirements = account_standing(obj)
        return EventKind.PAYEE_UPDATED, {
            "payee_id": optional_str(obj.get("id")),
            "payee_status": status,
            "requirements": requirements,
        }
    if event_type in ("transfer.created", "transfer.reversed", "transfer.updated"):
        fields = {
            "payout_id": optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount")),
            "currency": upper(obj.get("currency")),
            "reference": _metadata(obj, PAYOUT_REFERENCE_KEY),
        }
        amount = optional_int(obj.get("amount")) or 0
        reversed_amount = optional_int(obj.get("amount_reversed")) or 0
        if amount and reversed_amount >= amount:
            return EventKind.PAYOUT_REVERSED, {**fields, "failure_reason": "transfer reversed"}
        if event_type == "transfer.created":
            return EventKind.PAYOUT_PAID, fields
        return EventKind.IGNORED, fields  # a partial reversal is for an operator to look at
    return EventKind.IGNORED, {}


def _metadata(obj: Mapping[str, Any], key: str) -> str | None:
    metadata = obj.get("metadata")
    return optional_str(metadata.get(key)) if isinstance(metadata, dict) else None


def _required(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Stripe's answer has no {key}")
    return value


__all__ = [
    "PAYOUT_STATUSES",
    "StripeConnectPayouts",
    "account_standing",
    "connect_event",
    "provider_payout",
]
