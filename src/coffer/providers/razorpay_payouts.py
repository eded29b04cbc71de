"""RazorpayX payees and payouts for `RazorpayProvider` (a mixin: razorpay.py is long enough).

A payee is a RazorpayX contact (`POST /v1/contacts`, `reference_id` = Coffer's user id) and a
fund account under it (`POST /v1/fund_accounts`: a bank account or a VPA), which RazorpayX
validates as it is made (IFSC, account number, VPA format) and answers active. Neither call has
an idempotency header, but RazorpayX answers an existing contact or fund account when it is
asked to make an identical one, so a retry finds the first instead of making a second.

A payout (`POST /v1/payouts` to a `fund_account_id`, from the business account
`COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER`) carries `X-Payout-Idempotency` (the payout's id, with
its attempt number after a retry), so it is retried and never doubled; `reference_id` and
`notes.coffer_payout_id` carry Coffer's payout id back in its webhooks. `GET /v1/payouts/{id}`
tells the reconciler how one stands. The SDK has no RazorpayX resources: the client's own
`post` and `get` keep its auth, base URL and error mapping.

`payout` is the older composite payout (`POST /v1/payouts` with the contact and fund account
inline, no payee made first): `X-Payout-Idempotency` comes from Coffer's payout id, its id goes
into `notes.payout_id`, and a `cancelled` one is reported failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from coffer.errors import ProviderDisabled, ProviderRejected, ProviderUnavailable
from coffer.providers._common import (
    check_amount,
    check_currency,
    derived_key,
    optional_int,
    optional_str,
    safe_code,
    upper,
)
from coffer.providers.base import (
    PayeePayoutRequest,
    PayeeRequest,
    PayoutRequest,
    ProviderPayee,
    ProviderPayout,
)

NARRATION_LENGTH_MAX = 30  # RazorpayX: alphanumerics and spaces, at most 30
REFERENCE_LENGTH_MAX = 40
CONTACT_NAME_LENGTH_MAX = 50
NOTE_LENGTH_MAX = 256  # Razorpay caps each note value at 256 characters
PAYOUT_REFERENCE_NOTE = "coffer_payout_id"
_PAYOUT_KEY = r"[A-Za-z0-9 _-]{4,36}"  # X-Payout-Idempotency: 4-36 of these
# RazorpayX's payout statuses in Coffer's words (`cancelled`: a queued payout called off).
PAYOUT_STATUSES: Mapping[str, str] = {
    "queued": "pending",
    "pending": "pending",
    "scheduled": "pending",
    "processing": "processing",
    "processed": "paid",
    "reversed": "reversed",
    "failed": "failed",
    "rejected": "failed",
    "cancelled": "cancelled",
}
# The composite payout's (`payout`): a cancelled one has always been reported failed.
COMPOSITE_PAYOUT_STATUSES: Mapping[str, str] = {
    **PAYOUT_STATUSES,
    "cancelled": "failed",
}
_MODES = {"bank_account": "IMPS", "vpa": "UPI"}


class RazorpayXPayouts:
    """The payee and payout half of `RazorpayProvider`; it supplies `_client` and `_call`."""

    _client: Any
    _payout_account_number: str | None

    def _call(
        self,
        method: Callable[..., Any],
        *args: Any,
        retry: bool,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:  # pragma: no cover - RazorpayProvider's own
        raise NotImplementedError

    def create_payee(self, request: PayeeRequest) -> ProviderPayee:
        destination = request.destination
        kind = destination.get("type")
        if kind == "bank_account":
            account: dict[str, Any] = {
                "account_type": "bank_account",
                "bank_account": {
                    "name": str(destination.get("name") or request.name)[:120],
                    "ifsc": str(destination.get("ifsc", "")).upper(),
                    "account_number": str(destination.get("account_number", "")),
                },
            }
        elif kind == "vpa":
            account = {"account_type": "vpa", "vpa": {"address": str(destination.get("address"))}}
        else:
            raise ProviderRejected("RazorpayX pays bank accounts and VPAs only", type=kind)
        contact = self._call(
            self._client.post,
            "/v1/contacts",
            {
                "name": request.name[:CONTACT_NAME_LENGTH_MAX],
                "type": "customer",
                "reference_id": request.user_id[:REFERENCE_LENGTH_MAX],
                "notes": {"coffer_user_id": request.user_id},
            },
            retry=True,  # an identical contact is answered, not made again
        )
        contact_id = _required(contact, "id")
        fund_account = self._call(
            self._client.post,
            "/v1/fund_accounts",
            {"contact_id": contact_id, **account},
            retry=True,  # likewise for an identical fund account
        )
        active = fund_account.get("active") is not False
        return ProviderPayee(
            account_id=_required(fund_account, "id"),
            status="active" if active else "rejected",
            contact_id=contact_id,
            requirements=() if active else ("fund_account_inactive",),
        )

    def create_payout(self, request: PayeePayoutRequest) -> ProviderPayout:
        account_number = self._account_number()
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        mode = _MODES.get(request.destination_type)
        if mode is None:
            raise ProviderRejected("RazorpayX pays bank accounts and VPAs only")
        body = {
            "account_number": account_number,
            "fund_account_id": request.account_id,
            "amount": amount,
            "currency": currency,
            "mode": mode,
            "purpose": "payout",
            "queue_if_low_balance": True,
            "reference_id": request.payout_id[:REFERENCE_LENGTH_MAX],
            "narration": _narration(request.description),
            "notes": {PAYOUT_REFERENCE_NOTE: request.payout_id},
        }
        payout = self._post_payout(body, idempotency_key=request.idempotency_key)
        return provider_payout(payout, amount=amount, currency=currency)

    def fetch_payout(self, *, payout_id: str) -> ProviderPayout:
        if not re.fullmatch(r"pout_[A-Za-z0-9]{1,40}", payout_id):
            raise ProviderRejected("not a RazorpayX payout id", payout_id=payout_id[:64])
        return provider_payout(
            self._call(self._client.get, f"/v1/payouts/{payout_id}", {}, retry=True)
        )

    def payout(self, request: PayoutRequest) -> ProviderPayout:
        """A composite payout: the contact and fund account go inline with it."""
        account_number = self._account_number()
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        fund_account, mode = _fund_account(request.destination, reference_id=request.payout_id)
        body = {
            "account_number": account_number,
            "amount": amount,
            "currency": currency,
            "mode": mode,
            "purpose": "payout",
            "fund_account": fund_account,
            "queue_if_low_balance": True,
            "reference_id": request.payout_id[:REFERENCE_LENGTH_MAX],
            "narration": _narration(request.description),
            "notes": {"payout_id": request.payout_id[:NOTE_LENGTH_MAX]},
        }
        payout = self._post_payout(body, idempotency_key=request.payout_id)
        status = COMPOSITE_PAYOUT_STATUSES.get(str(payout.get("status")))
        if status is None:
            raise ProviderRejected(
                "Razorpay answered a payout in an unknown status",
                provider_status=safe_code(payout.get("status")),
            )
        return ProviderPayout(
            payout_id=_required(payout, "id"),
            amount=optional_int(payout.get("amount")) or amount,
            currency=upper(payout.get("currency")) or currency,
            status=status,
            failure_reason=payout_failure(payout) if status in ("failed", "reversed") else None,
        )

    def _account_number(self) -> str:
        """The business account payouts are made from; ProviderDisabled without one."""
        if self._payout_account_number is None:
            raise ProviderDisabled(
                "Razorpay payouts are off: COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER is not set",
                missing=["COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER"],
            )
        return self._payout_account_number

    def _post_payout(self, body: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """`POST /v1/payouts`, retried under `X-Payout-Idempotency` (so never doubled)."""
        key = derived_key(idempotency_key, pattern=_PAYOUT_KEY, length_max=36)
        return self._call(
            self._client.post,
            "/v1/payouts",
            body,
            headers={"X-Payout-Idempotency": key},
            retry=True,
        )


def provider_payout(
    payout: Mapping[str, Any], *, amount: int | None = None, currency: str | None = None
) -> ProviderPayout:
    """A RazorpayX payout entity (an answer, or a webhook's) in Coffer's words."""
    status = PAYOUT_STATUSES.get(str(payout.get("status")))
    if status is None:
        raise ProviderRejected(
            "Razorpay answered a payout in an unknown status",
            provider_status=safe_code(payout.get("status")),
        )
    found_amount = optional_int(payout.get("amount")) or amount
    found_currency = upper(payout.get("currency")) or currency
    if found_amount is None or found_currency is None:
        raise ProviderUnavailable("Razorpay's payout has no amount or currency")
    return ProviderPayout(
        payout_id=_required(payout, "id"),
        amount=found_amount,
        currency=found_currency,
        status=status,
        failure_reason=payout_failure(payout) if status in ("failed", "reversed") else None,
        reference=payout_reference(payout),
    )


def payout_reference(payout: Mapping[str, Any]) -> str | None:
    """Coffer's payout id, from the notes it sent (else the payout's `reference_id`)."""
    notes = payout.get("notes")
    noted = optional_str(notes.get(PAYOUT_REFERENCE_NOTE)) if isinstance(notes, dict) else None
    return noted or optional_str(payout.get("reference_id"))


def payout_failure(payout: Mapping[str, Any]) -> str | None:
    details = payout.get("status_details")
    described = details.get("description") if isinstance(details, dict) else None
    return optional_str(payout.get("failure_reason")) or optional_str(described)


def _narration(description: str) -> str:
    """What the payee's statement says: RazorpayX takes alphanumerics and spaces, at most 30."""
    narration = re.sub(r"[^A-Za-z0-9 ]", " ", description or "Coffer payout")
    return narration.strip()[:NARRATION_LENGTH_MAX] or "Coffer payout"


def _fund_account(
    destination: Mapping[str, Any], *, reference_id: str
) -> tuple[dict[str, Any], str]:
    """RazorpayX's inline fund account for a destination, and the transfer mode it takes."""
    kind = destination.get("type")
    name = destination.get("name")
    contact = {
        "name": str(name or "Coffer user")[:CONTACT_NAME_LENGTH_MAX],
        "type": "customer",
        "reference_id": str(destination.get("contact_id") or reference_id)[:REFERENCE_LENGTH_MAX],
    }
    if kind == "bank_account":
        missing = [f for f in ("name", "ifsc", "account_number") if not destination.get(f)]
        if missing:
            raise ProviderRejected(f"a bank account destination needs {', '.join(missing)}")
        mode = str(destination.get("mode") or "IMPS").upper()
        if mode not in ("IMPS", "NEFT", "RTGS"):
            raise ProviderRejected("a bank transfer's mode is IMPS, NEFT or RTGS")
        account = {
            "account_type": "bank_account",
            "bank_account": {
                "name": str(name)[:120],
                "ifsc": str(destination["ifsc"]).upper(),
                "account_number": str(destination["account_number"]),
            },
            "contact": contact,
        }
        return account, mode
    if kind == "vpa":
        address = destination.get("address")
        if not isinstance(address, str) or "@" not in address:
            raise ProviderRejected("a VPA destination needs an address like name@bank")
        return {"account_type": "vpa", "vpa": {"address": address}, "contact": contact}, "UPI"
    raise ProviderRejected("a payout destination's type is 'bank_account' or 'vpa'")


def _required(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Razorpay's answer has no {key}")
    return value


__all__ = [
    "COMPOSITE_PAYOUT_STATUSES",
    "PAYOUT_STATUSES",
    "RazorpayXPayouts",
    "payout_failure",
    "payout_reference",
    "provider_payout",
]
