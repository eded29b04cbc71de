"""Factories for outbound webhook tests: register endpoints, run the delivery job on a clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from coffer import outbound
from coffer.kit.clock import utc_now
from coffer.outbound.urls import UrlPolicy
from tests.api.harness import Api

DEVELOPMENT = UrlPolicy.of(env="development", allow_private=False)


@dataclass
class Clock:
    """A clock the test moves; it starts at the real now (so signatures verify by the wall)."""

    now: datetime = field(default_factory=utc_now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def use_clock(api: Api) -> Clock:
    clock = Clock()
    api.coffer.app.state.clock = clock
    return clock


def register(api: Api, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    response = api.client.post(
        "/admin/webhook-endpoints",
        json={"url": url, "events": events or ["*"], **extra},
        headers=api.admin(),
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def deliver(api: Api, clock: Clock, *, policy: UrlPolicy = DEVELOPMENT) -> int:
    """One run of the delivery job at the clock's time."""
    return outbound.deliver_due(api.database, clock, policy=policy, rng=random.Random(7))


def deliveries(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get("/admin/webhook-deliveries", params=params, headers=api.admin())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def endpoint(api: Api, endpoint_id: str) -> dict[str, Any]:
    response = api.client.get("/admin/webhook-endpoints", headers=api.admin())
    assert response.status_code == 200, response.text
    (found,) = [e for e in response.json()["data"] if e["id"] == endpoint_id]
    return dict(found)


def audit(api: Api, action: str) -> list[dict[str, Any]]:
    response = api.client.get("/admin/audit-log", params={"action": action}, headers=api.admin())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found
