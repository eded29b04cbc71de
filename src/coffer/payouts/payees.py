"""Payees: where a user's payouts go, as a provider holds it (PUT /payees/me).

- Razorpay (RazorpayX): a contact and a fund account (a bank account or a VPA), validated by
  RazorpayX as it is made: `active` at once.
- Stripe: an Express connected account and its one-time onboarding link: `pending` until
  Stripe's `account.updated` says charges and payouts are enabled (`active`) or that it refused
  the account (`rejected`).
- mock: `active` at once.

A payee is not money: its row is written in an ordinary transaction, after the provider made
the destination (no transaction is open while the provider is asked). Only what may be shown
back is kept (an IFSC and the account's last four, a VPA); the provider keeps the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from coffer.db import Database, dialect
from coffer.errors import NotFound, ValidationFailed
from coffer.payouts.tables import payees
from coffer.providers import Providers
from coffer.providers.base import PayeeRequest, ProviderPayee

# Which destinations each provider pays.
DESTINATIONS: dict[str, frozenset[str]] = {
    "razorpay": frozenset({"bank_account", "vpa"}),
    "stripe": frozenset({"stripe_account"}),
    "mock": frozenset({"bank_account", "vpa", "stripe_account"}),
}
REQUIREMENTS_MAX = 50
NAME_LENGTH_MAX = 120


@dataclass(frozen=True, slots=True)
class Payee:
    user_id: str
    provider: str
    status: str
    destination_type: str
    destination: dict[str, Any]  # shown back: never a full account number
    provider_account_id: str
    provider_contact_id: str | None
    requirements: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    onboarding_url: str | None = None  # only in the answer that made it: one-time


def _payee(row: Row[Any]) -> Payee:
    m = row._mapping
    return Payee(
        user_id=m["user_id"],
        provider=m["provider"],
        status=m["status"],
        destination_type=m["destination_type"],
        destination=json.loads(m["destination"]),
        provider_account_id=m["provider_account_id"],
        provider_contact_id=m["provider_contact_id"],
        requirements=tuple(json.loads(m["requirements"])),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def shown(destination: dict[str, Any]) -> dict[str, Any]:
    """What of a destination may be stored and shown back."""
    kind = destination["type"]
    if kind == "bank_account":
        number = str(destination["account_number"])
        return {
            "type": kind,
            "name": destination["name"],
            "ifsc": str(destination["ifsc"]).upper(),
            "account_last4": number[-4:],
        }
    if kind == "vpa":
        return {"type": kind, "address": destination["address"]}
    return {
        "type": kind,
        "country": destination.get("country"),
        "email": destination.get("email"),
    }


def put_payee(
    database: Database,
    providers: Providers,
    *,
    user_id: str,
    provider_name: str,
    destination: dict[str, Any],
    return_url: str,
    now: datetime,
) -> Payee:
    """Make the user's payout destination at the provider, then record it (replacing any
    earlier one). The destination is schema-checked; the provider checks it again."""
    kind = destination["type"]
    provider = providers.get(provider_name)  # ProviderOff (422) when it is off
    if kind not in DESTINATIONS.get(provider_name, frozenset()):
        accepted = ", ".join(sorted(DESTINATIONS.get(provider_name, frozenset())))
        raise ValidationFailed(
            f"{provider_name} pays out to {accepted}, not {kind}",
            fields=[
                {"field": "body.destination.type", "message": f"one of {accepted}", "type": kind}
            ],
        )
    name = str(destination.get("name") or user_id)[:NAME_LENGTH_MAX]
    made = provider.create_payee(
        PayeeRequest(user_id=user_id, name=name, destination=destination, return_url=return_url)
    )
    with database.unit_of_work() as session:
        payee = record_payee(
            session, user_id=user_id, provider=provider_name, destination=destination, made=made,
            now=now,
        )  # fmt: skip
    return Payee(**{**_fields(payee), "onboarding_url": made.onboarding_url})


def _fields(payee: Payee) -> dict[str, Any]:
    return {name: getattr(payee, name) for name in Payee.__slots__}


def record_payee(
    session: Session,
    *,
    user_id: str,
    provider: str,
    destination: dict[str, Any],
    made: ProviderPayee,
    now: datetime,
) -> Payee:
    values = {
        "provider": provider,
        "status": made.status,
        "destination_type": destination["type"],
        "destination": json.dumps(shown(destination), sort_keys=True),
        "provider_account_id": made.account_id[:64],
        "provider_contact_id": None if made.contact_id is None else made.contact_id[:64],
        "requirements": json.dumps(list(made.requirements[:REQUIREMENTS_MAX])),
        "updated_at": now,
    }
    session.execute(
        dialect.insert(session, payees)
        .values(user_id=user_id, created_at=now, **values)
        .on_conflict_do_update(index_elements=["user_id"], set_=values)
    )
    return get_payee(session, user_id)


def find_payee(session: Session, user_id: str) -> Payee | None:
    row = session.execute(select(payees).where(payees.c.user_id == user_id)).first()
    return None if row is None else _payee(row)


def get_payee(session: Session, user_id: str) -> Payee:
    found = find_payee(session, user_id)
    if found is None:
        raise NotFound("no payee: PUT /payees/me first", user_id=user_id)
    return found


# A payee's status moves pending -> active | rejected and active -> rejected; `rejected` is
# final here (a new PUT makes a new payee), and an older event never undoes a newer one.
_MOVES = {("pending", "active"), ("pending", "rejected"), ("active", "rejected")}


def apply_payee_event(
    session: Session,
    *,
    provider: str,
    account_id: str,
    status: str,
    requirements: tuple[str, ...],
    now: datetime,
) -> bool:
    """The provider says how a payee stands (Stripe `account.updated`); whether it moved."""
    row = session.execute(
        select(payees)
        .where(payees.c.provider == provider, payees.c.provider_account_id == account_id)
        .with_for_update()
    ).first()
    if row is None:
        return False
    payee = _payee(row)
    values: dict[str, Any] = {"requirements": json.dumps(list(requirements[:REQUIREMENTS_MAX]))}
    if (payee.status, status) in _MOVES:
        values["status"] = status
    elif payee.status != status:
        return False  # backwards, or out of order: the newer state stands
    session.execute(
        update(payees)
        .where(payees.c.user_id == payee.user_id, payees.c.status == payee.status)
        .values(updated_at=now, **values)
    )
    return True
