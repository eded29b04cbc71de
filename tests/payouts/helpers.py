"""Factories for payout tests: earnings, payees, payouts, and what the books say."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from coffer import ledger
from coffer.kit.clock import utc_now
from coffer.payouts import tasks
from coffer.wallets import service as wallets
from tests.api.harness import Api
from tests.kyc.test_kyc import decide, status_of, submit

BANK = {
    "type": "bank_account",
    "name": "Asha Rao",
    "ifsc": "HDFC0001234",
    "account_number": "50100123456789",
}
FAILING_BANK = {**BANK, "account_number": "50100123450000"}
VPA = {"type": "vpa", "address": "asha@okhdfc"}


def earn(api: Api, user_id: str, diamonds: int) -> None:
    """Diamonds in the user's earnings, as gifts and calls would leave them."""
    with api.database.unit_of_work() as session:
        earnings = wallets.earnings_account(session, user_id)
        source = wallets.system_account(session, kind="issuance", asset="DIAMOND")
        ledger.transfer(
            session,
            debit_account_id=source.id,
            credit_account_id=earnings.id,
            amount=diamonds,
            type="gift",
        )


def earnings(api: Api, user_id: str) -> tuple[int, int]:
    """(posted, available) of the user's DIAMOND earnings."""
    response = api.client.get("/wallet/balance", headers=api.user(user_id))
    assert response.status_code == 200, response.text
    for account in response.json()["accounts"]:
        if account["kind"] == "earnings" and account["asset"] == "DIAMOND":
            return account["posted"], account["available"]
    return 0, 0


def approve_kyc(api: Api, user_id: str) -> None:
    """The user's KYC submitted and approved by an admin, through the API (once)."""
    if status_of(api, user_id) == "approved":
        return
    assert submit(api, user_id).status_code == 201
    assert decide(api, user_id, "approve", api.admin(), reason="documents match").status_code == 200


def put_payee(api: Api, user_id: str, provider: str, destination: dict[str, Any]) -> Any:
    """A payee for a user whose KYC is approved (a payout needs both)."""
    approve_kyc(api, user_id)
    return api.client.put(
        "/payees/me",
        json={"provider": provider, "destination": destination},
        headers=api.user(user_id),
    )


def request_payout(
    api: Api, user_id: str, amount: Any, key: str | None = None, **extra: Any
) -> Any:
    headers = api.user(user_id)
    if key is not None:
        headers["Idempotency-Key"] = key
    return api.client.post("/wallet/payout", json={"amount": amount, **extra}, headers=headers)


def payout(api: Api, user_id: str, payout_id: str) -> dict[str, Any]:
    response = api.client.get(f"/wallet/payouts/{payout_id}", headers=api.user(user_id))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["payout"]
    return found


def reconcile(api: Api, *, later_s: int = 3_600) -> int:
    """One run of the reconciler, as if `later_s` had passed."""
    return tasks.reconcile_payouts(
        api.database,
        api.coffer.app.state.providers,
        lambda: utc_now() + timedelta(seconds=later_s),
        writer=api.coffer.writer,
    )


def event_types(api: Api, user_id: str) -> list[tuple[str, str | None]]:
    response = api.client.get("/events", params={"limit": 500}, headers=api.user(user_id))
    assert response.status_code == 200, response.text
    return [
        (e["type"], e["data"].get("status") or e["data"].get("kind"))
        for e in response.json()["data"]
    ]


def payout_transfers(api: Api, payout_id: str) -> list[ledger.Transfer]:
    from sqlalchemy import select

    from coffer.ledger.tables import transfers

    with api.database.read() as session:
        rows = session.execute(
            select(transfers.c.id).where(transfers.c.idempotency_key.like(f"{payout_id}:%"))
        ).all()
        return [ledger.get_transfer(session, r.id) for r in rows]
