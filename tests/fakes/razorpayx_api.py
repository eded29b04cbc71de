"""RazorpayX contacts and fund accounts for the Razorpay fake (a mixin of `RazorpayFake`).

As RazorpayX does: a contact needs a name (3-50 characters) and a known type; a fund account
needs an existing contact and a valid bank account (IFSC `^[A-Z]{4}0[A-Z0-9]{6}$`, an account
number of 5-35 letters or digits, a holder's name) or VPA (`name@bank`). Asking again for an
identical contact or fund account answers the existing one instead of making a second.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.fakes._http import HttpError, Request, Response, random_id, route

IFSC = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
ACCOUNT_NUMBER = re.compile(r"^[A-Za-z0-9]{5,35}$")
VPA = re.compile(r"^[A-Za-z0-9.\-_]{2,256}@[A-Za-z]{2,64}$")
CONTACT_TYPES = {"vendor", "customer", "employee", "self"}


def _bad(description: str, field: str) -> HttpError:
    return HttpError(
        400,
        {
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "description": description,
                "source": "business",
                "step": "NA",
                "reason": "input_validation_failed",
                "metadata": {},
                "field": field,
            }
        },
    )


class RazorpayXFake:
    contacts: dict[str, dict[str, Any]]
    fund_accounts: dict[str, dict[str, Any]]

    def _init_razorpayx(self) -> None:
        self.contacts = {}
        self.fund_accounts = {}

    @route("POST", r"/v1/contacts")
    def create_contact(self, request: Request) -> Response:
        data = request.json()
        name = data.get("name")
        if not isinstance(name, str) or not 3 <= len(name) <= 50:
            raise _bad("The name must be between 3 and 50 characters.", "name")
        if data.get("type") not in CONTACT_TYPES:
            raise _bad("Invalid type: " + str(data.get("type")), "type")
        for contact in self.contacts.values():
            if all(contact.get(k) == data.get(k) for k in ("name", "type", "reference_id")):
                return Response(200, contact)  # RazorpayX answers the identical contact
        contact = {
            "id": random_id("cont_"),
            "entity": "contact",
            "name": name,
            "type": data["type"],
            "reference_id": data.get("reference_id"),
            "email": data.get("email"),
            "contact": data.get("contact"),
            "notes": data.get("notes") or {},
            "active": True,
            "created_at": int(time.time()),
        }
        self.contacts[contact["id"]] = contact
        return Response(201, contact)

    @route("POST", r"/v1/fund_accounts")
    def create_fund_account(self, request: Request) -> Response:
        data = request.json()
        contact_id = data.get("contact_id")
        if contact_id not in self.contacts:
            raise _bad("The id provided does not exist", "contact_id")
        kind = data.get("account_type")
        if kind == "bank_account":
            bank = data.get("bank_account") or {}
            if not IFSC.match(str(bank.get("ifsc", ""))):
                raise _bad("Invalid IFSC Code in Bank Account", "ifsc")
            if not ACCOUNT_NUMBER.match(str(bank.get("account_number", ""))):
                raise _bad("The account number is invalid", "account_number")
            if not 3 <= len(str(bank.get("name") or "")) <= 120:
                raise _bad("The name field is required and must be 3-120 characters.", "name")
            details: dict[str, Any] = {
                "bank_account": {**bank, "bank_name": "Fake Bank " + bank["ifsc"][:4]}
            }
        elif kind == "vpa":
            address = str((data.get("vpa") or {}).get("address", ""))
            if not VPA.match(address):
                raise _bad("Invalid VPA. Please enter a valid Virtual Payment Address", "address")
            details = {"vpa": {"address": address, "username": address.split("@", maxsplit=1)[0]}}
        else:
            raise _bad("Invalid account type: " + str(kind), "account_type")
        for account in self.fund_accounts.values():
            if (
                account["contact_id"] == contact_id
                and account["account_type"] == kind
                and all(account[kind].get(k) == v for k, v in data[kind].items())
            ):
                return Response(200, account)
        account = {
            "id": random_id("fa_"),
            "entity": "fund_account",
            "contact_id": contact_id,
            "account_type": kind,
            **details,
            "active": True,
            "batch_id": None,
            "created_at": int(time.time()),
        }
        self.fund_accounts[account["id"]] = account
        return Response(201, account)

    def resolve_fund_account(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """A payout's fund account: inline (composite) or by `fund_account_id`."""
        if "fund_account_id" not in data:
            return data.get("fund_account") if isinstance(data.get("fund_account"), dict) else None
        account = self.fund_accounts.get(str(data["fund_account_id"]))
        if account is None:
            raise _bad("The id provided does not exist", "fund_account_id")
        if not account["active"]:
            raise _bad("The fund account is not active", "fund_account_id")
        return account
