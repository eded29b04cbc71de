"""Stripe Connect for the Stripe fake (a mixin of `StripeFake`): Express accounts, account
links, and transfers to connected accounts.

As Stripe does: an Express account needs a known country and starts with charges and payouts
disabled and its requirements due; an account link needs an existing account, `refresh_url`,
`return_url` and `type=account_onboarding`; a transfer needs a destination whose `transfers`
capability is active and the platform balance to cover it. Test-only helpers play the user and
Stripe's review: `complete_onboarding`, `reject_account` (each records `account.updated`), and
`reverse_transfer` (`transfer.reversed`).
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes._http import HttpError, Request, Response, Webhook, random_id, route

COUNTRIES = {"US", "GB", "IN", "SG", "CA", "AU", "DE", "FR"}
DUE = ["business_profile.url", "external_account", "individual.dob.day", "tos_acceptance.date"]


def _error(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> HttpError:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return HttpError(status, {"error": error})


class StripeConnectFake:
    accounts: dict[str, dict[str, Any]]
    account_links: list[dict[str, Any]]
    transfers: dict[str, dict[str, Any]]
    balance: dict[str, int]

    def _init_connect(self) -> None:
        self.accounts = {}
        self.account_links = []
        self.transfers = {}

    def _emit(self, event_type: str, obj: dict[str, Any]) -> Webhook:  # pragma: no cover
        raise NotImplementedError

    @route("POST", r"/v1/accounts")
    def create_account(self, request: Request) -> Response:
        data = request.form()
        if data.get("type") not in ("express", "standard", "custom"):
            raise _error("Invalid type: must be one of express, standard, custom", param="type")
        country = data.get("country", "US")
        if country not in COUNTRIES:
            raise _error(f"Country '{country}' is unknown.", param="country")
        account = {
            "id": random_id("acct_1", 16),
            "object": "account",
            "type": data["type"],
            "country": country,
            "email": data.get("email"),
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            "capabilities": {"transfers": "inactive"},
            "metadata": data.get("metadata") or {},
            "requirements": {
                "currently_due": list(DUE),
                "past_due": [],
                "eventually_due": list(DUE),
                "disabled_reason": "requirements.past_due",
            },
            "created": int(time.time()),
        }
        self.accounts[account["id"]] = account
        return Response(200, account)

    @route("GET", r"/v1/accounts/(?P<account_id>[^/]+)")
    def retrieve_account(self, request: Request, account_id: str) -> Response:
        return Response(200, self._account(account_id))

    @route("POST", r"/v1/account_links")
    def create_account_link(self, request: Request) -> Response:
        data = request.form()
        self._account(str(data.get("account")))
        for name in ("refresh_url", "return_url"):
            if not str(data.get(name, "")).startswith(("http://", "https://")):
                raise _error(
                    f"Missing required param: {name}.", param=name, code="parameter_missing"
                )
        if data.get("type") not in ("account_onboarding", "account_update"):
            raise _error("Invalid type", param="type")
        link = {
            "object": "account_link",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 300,
            "url": f"https://connect.stripe.com/setup/e/{data['account']}/{random_id('', 12)}",
        }
        self.account_links.append(link)
        return Response(200, link)

    @route("POST", r"/v1/transfers")
    def create_transfer(self, request: Request) -> Response:
        data = request.form()
        amount_text = str(data.get("amount", ""))
        if not amount_text.isdigit() or int(amount_text) < 1:
            raise _error(
                "Invalid integer: " + amount_text, param="amount", code="parameter_invalid_integer"
            )
        amount = int(amount_text)
        currency = str(data.get("currency", ""))
        account = self._account(str(data.get("destination")), param="destination")
        if account["capabilities"].get("transfers") != "active":
            raise _error(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                param="destination",
            )
        if self.balance.get(currency, 0) < amount:
            raise _error(
                "You have insufficient available funds in your Stripe account.",
                code="balance_insufficient",
            )
        self.balance[currency] -= amount
        transfer = {
            "id": random_id("tr_1", 23),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": currency,
            "destination": account["id"],
            "description": data.get("description"),
            "metadata": data.get("metadata") or {},
            "reversed": False,
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0},
            "transfer_group": data.get("transfer_group"),
            "created": int(time.time()),
        }
        self.transfers[transfer["id"]] = transfer
        self._emit("transfer.created", transfer)
        return Response(200, transfer)

    @route("GET", r"/v1/transfers/(?P<transfer_id>[^/]+)")
    def retrieve_transfer(self, request: Request, transfer_id: str) -> Response:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            raise _error(f"No such transfer: '{transfer_id}'", status=404, code="resource_missing")
        return Response(200, transfer)

    # -- test-only helpers ---------------------------------------------------------------------

    def complete_onboarding(self, account_id: str) -> Webhook:
        """The user finishes onboarding: charges, payouts and transfers enabled."""
        account = self._account(account_id)
        account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
        account["capabilities"] = {"transfers": "active"}
        account["requirements"] = {
            "currently_due": [], "past_due": [], "eventually_due": [], "disabled_reason": None,
        }  # fmt: skip
        return self._emit("account.updated", account)

    def reject_account(self, account_id: str, reason: str = "rejected.fraud") -> Webhook:
        account = self._account(account_id)
        account.update(charges_enabled=False, payouts_enabled=False)
        account["capabilities"] = {"transfers": "inactive"}
        account["requirements"] = {**account["requirements"], "disabled_reason": reason}
        return self._emit("account.updated", account)

    def reverse_transfer(self, transfer_id: str) -> Webhook:
        transfer = self.transfers[transfer_id]
        amount = transfer["amount"] - transfer["amount_reversed"]
        transfer.update(amount_reversed=transfer["amount"], reversed=True)
        transfer["reversals"]["data"].append({"id": random_id("trr_1", 23), "amount": amount})
        self.balance[transfer["currency"]] = self.balance.get(transfer["currency"], 0) + amount
        return self._emit("transfer.reversed", transfer)

    def fund(self, currency: str, amount: int) -> None:
        """Money in the platform's balance to transfer from (payments would put it there)."""
        self.balance[currency] = self.balance.get(currency, 0) + amount

    def _account(self, account_id: str, *, param: str = "account") -> dict[str, Any]:
        account = self.accounts.get(account_id)
        if account is None:
            raise _error(
                f"No such account: '{account_id}'", status=404 if param == "account" else 400,
                param=param, code="resource_missing",
            )  # fmt: skip
        return account
