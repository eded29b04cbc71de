"""What every step of the tour uses: one HTTP caller with its keys and tokens, and checks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

Json = dict[str, Any]

BPS = 10_000
TOKEN_TTL_S = 3_600


class StepFailed(Exception):
    """A step's request was refused, or a figure was not what the step expected."""


def split_of(amount: int, *, commission_bps: int, fee_bps: int) -> tuple[int, int, int]:
    """(host, agency, platform): both shares of the whole, floored; the host takes the rest."""
    agency = amount * commission_bps // BPS
    platform = amount * fee_bps // BPS
    return amount - agency - platform, agency, platform


def expect(label: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise StepFailed(f"{label} is {actual!r}, expected {expected!r}")


class Caller:
    """Requests as the admin, the service or a user, each with its bearer token."""

    def __init__(self, client: httpx.Client, *, admin_key: str, service_key: str) -> None:
        self.client = client
        self.admin = admin_key
        self.service = service_key
        self.run_id = uuid.uuid4().hex[:8]  # Idempotency-Keys of this run's own
        self.tokens: dict[str, str] = {}
        self.scales: dict[str, int] = {}  # digits after the point, per asset
        self.orders: list[str] = []  # the payment orders the tour made

    def http(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Json | None = None,
        key: str | None = None,
        params: Json | None = None,
    ) -> Json:
        """One request; anything but a 2xx is the step's failure, with the server's reason."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key is not None:
            headers["Idempotency-Key"] = f"demo-{self.run_id}-{key}"
        response = self.client.request(method, path, json=body, headers=headers, params=params)
        if not response.is_success:
            raise StepFailed(
                f"{method} {path} answered {response.status_code}: {_reason(response)}"
            )
        found: Json = response.json()
        return found

    def user(self, user_id: str) -> str:
        """The user's token, minted once through POST /auth/token with the service key."""
        if user_id not in self.tokens:
            body = {"user_id": user_id, "ttl_s": TOKEN_TTL_S}
            minted = self.http("POST", "/auth/token", token=self.service, body=body)
            self.tokens[user_id] = minted["token"]
        return self.tokens[user_id]

    def account(self, user_id: str, kind: str, asset: str = "DIAMOND") -> Json:
        found = self.http("GET", "/wallet/balance", token=self.user(user_id))["accounts"]
        for row in found:
            if (row["kind"], row["asset"]) == (kind, asset):
                return dict(row)
        return {"kind": kind, "asset": asset, "posted": 0, "pending_out": 0, "available": 0}

    def posted(self, user_id: str, kind: str = "wallet", asset: str = "DIAMOND") -> int:
        return int(self.account(user_id, kind, asset)["posted"])

    def money(self, amount: int, currency: str) -> str:
        scale = self.scales.get(currency, 0)
        if currency == "DIAMOND" or scale == 0:
            return f"{amount} {'diamonds' if currency == 'DIAMOND' else currency}"
        return f"{currency} {amount // 10**scale}.{amount % 10**scale:0{scale}d}"

    def buy(self, user_id: str, body: Json, key: str) -> tuple[Json, Json]:
        """A top-up order, then the client's confirmation: (the order, verify's answer)."""
        token = self.user(user_id)
        order = self.http("POST", "/wallet/topup", token=token, body=body, key=key)["order"]
        confirm = {"order_id": order["id"], **order["checkout"]}
        verified = self.http("POST", "/wallet/verify", token=token, body=confirm)
        expect(f"order {order['id']} status", verified["order"]["status"], "succeeded")
        self.orders.append(order["id"])
        return order, verified


def _reason(response: httpx.Response) -> str:
    """The error's code and message (API.md's one shape), or the start of the body."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
