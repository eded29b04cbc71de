"""Factories for subscription tests: subscribe, read, run the renewal job at a given time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from coffer.ledger.tables import transfers
from coffer.subscriptions import tasks
from coffer.subscriptions.tables import subscription_periods, subscriptions
from tests.api.harness import Api

DIAMOND_PLAN = "premium-diamond-monthly"
DIAMOND_PRICE = 990


def subscribe(
    api: Api,
    user_id: str,
    plan_id: str = DIAMOND_PLAN,
    pay_with: str = "wallet",
    *,
    key: str | None = None,
    **extra: Any,
) -> Any:
    headers = api.user(user_id)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"plan_id": plan_id, "pay_with": pay_with, **extra}
    return api.client.post("/subscriptions", json=body, headers=headers)


def subscribed(api: Api, user_id: str, plan_id: str = DIAMOND_PLAN, **body: Any) -> dict[str, Any]:
    response = subscribe(api, user_id, plan_id, **body)
    assert response.status_code == 201, response.text
    sub: dict[str, Any] = response.json()["subscription"]
    return sub


def mine(api: Api, user_id: str) -> dict[str, Any]:
    response = api.client.get("/subscriptions/me", headers=api.user(user_id))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def at(api: Api, moment: datetime) -> None:
    """The app's clock reads `moment` from now on (for `is_premium` and new periods)."""
    api.coffer.app.state.clock = lambda: moment


def renew(api: Api, moment: datetime) -> int:
    """One run of the renewal job as if it were `moment`."""
    assert api.coffer.writer is not None
    return tasks.renew_due(
        api.database, api.coffer.writer, lambda: moment, api.coffer.settings.shop
    )


def subscription_charges(api: Api) -> list[tuple[int, str]]:
    """(amount, idempotency key) of every `subscription` transfer, oldest first."""
    with api.database.read() as session:
        rows = session.execute(
            select(transfers.c.amount, transfers.c.idempotency_key)
            .where(transfers.c.type == "subscription")
            .order_by(transfers.c.id)
        ).all()
    return [(r.amount, r.idempotency_key) for r in rows]


def periods_booked(api: Api) -> int:
    with api.database.read() as session:
        return int(
            session.execute(select(func.count()).select_from(subscription_periods)).scalar_one()
        )


def event_types(api: Api, user_id: str) -> list[str]:
    response = api.client.get("/events", headers=api.user(user_id))
    return [e["type"] for e in response.json()["data"]]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def anchor_of(api: Api, subscription_id: str) -> datetime:
    """When the subscription's first period began (its periods run from there)."""
    with api.database.read() as session:
        anchor: datetime = session.execute(
            select(subscriptions.c.anchor_at).where(subscriptions.c.id == subscription_id)
        ).scalar_one()
    return anchor
