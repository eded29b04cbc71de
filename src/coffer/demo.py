"""`coffer demo`: a scripted tour of the whole product, through the real HTTP API.

On a fresh database it makes users and an agency, tops up through the sandbox provider, sends
gifts with their commission split, bills a call, funds and releases an escrow, pays out a host's
earnings, refunds an order with its clawback, sells a subscription, reads the audit trail and
verifies the books. Every request goes through the app a user hits (authentication,
Idempotency-Keys, the writer), over Starlette's in-process ASGI client, and every step checks
its figures against the rates the server publishes. The first step that fails stops the tour
and names itself; the caller turns that into the exit status.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from coffer import auth
from coffer.api.app import API_PREFIX
from coffer.config import Settings
from coffer.server import Coffer, build

__all__ = ["StepFailed", "TourResult", "run_demo"]

Echo = Callable[[str], None]
Json = dict[str, Any]

BPS = 10_000
TOKEN_TTL_S = 3_600
PAYOUT_WAIT_S = 5.0  # the sandbox pays at once; a real server's answer may lag a moment
PAYOUT_POLL_S = 0.05
AUDIT_LIMIT = 100
# What the tour spends from alice's wallet: gifts, one call's holds, one month of premium.
GIFT_DIAMONDS = 4_000
CALL_RATE_PER_MINUTE = 60
CALL_DURATION_S = 95
ESCROW_AMOUNT = 50_000  # INR 500.00
PAYOUT_DIAMONDS = 2_000
DIAMOND_PLAN_ID = "premium-diamond-monthly"
TOPUP_PACKAGE_ID = "ultra"
REFUND_PACKAGE_ID = "popular"
KYC = {
    "full_name": "Host One",
    "document_type": "pan",
    "document_number": "ABCDE1234F",
    "document_front_url": "https://files.example.com/host1/pan.jpg",
    "selfie_url": "https://files.example.com/host1/selfie.jpg",
    "address": "4 Park St",
    "city": "Kolkata",
    "state": "West Bengal",
    "postal_code": "700016",
}
BANK = {
    "type": "bank_account",
    "name": "Host One",
    "ifsc": "HDFC0001234",
    "account_number": "50100123456789",
}


class StepFailed(Exception):
    """A step's request was refused, or a figure was not what the step expected."""


@dataclass(frozen=True)
class TourResult:
    ok: bool
    steps_passed: int
    failed_step: str | None = None
    reason: str | None = None


def split_of(amount: int, *, commission_bps: int, fee_bps: int) -> tuple[int, int, int]:
    """(host, agency, platform): both shares of the whole, floored; the host takes the rest."""
    agency = amount * commission_bps // BPS
    platform = amount * fee_bps // BPS
    return amount - agency - platform, agency, platform


def expect(label: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise StepFailed(f"{label} is {actual!r}, expected {expected!r}")


class Tour:
    """The steps, in order, against one client; each returns the lines it prints."""

    def __init__(self, client: httpx.Client, *, admin_key: str, service_key: str) -> None:
        self.client = client
        self.admin = admin_key
        self.service = service_key
        self.run_id = uuid.uuid4().hex[:8]  # Idempotency-Keys of this run's own
        self.tokens: dict[str, str] = {}
        self.scales: dict[str, int] = {}
        self.rates: Json = {}
        self.commission_bps = 1_000
        self.gifts_sent: list[int] = []
        self.gift_bodies: list[Json] = []
        self.gift_answers: list[Json] = []
        self.orders: list[str] = []
        self.refunded_order: Json = {}

    def steps(self) -> list[tuple[str, Callable[[], list[str]]]]:
        return [
            ("users and an agency", self.users),
            ("a top-up through the mock provider", self.topup),
            ("gifts with commission", self.gifts),
            ("a metered call", self.metered_call),
            ("an escrow, funded and released", self.escrow),
            ("KYC, a payee and a payout", self.payout),
            ("a refund with clawback", self.refund),
            ("a subscription paid from the wallet", self.subscription),
            ("the audit trail", self.audit),
            ("the ledger verifies", self.verify),
        ]

    def run(self, echo: Echo) -> TourResult:
        passed = 0
        for number, (title, step) in enumerate(self.steps(), start=1):
            try:
                lines = step()
            except StepFailed as exc:
                echo(f"{number:>2}. {title}: FAILED")
                echo(f"    {exc}")
                return TourResult(False, passed, f"{number}. {title}", str(exc))
            echo(f"{number:>2}. {title}: ok")
            for line in lines:
                echo(f"    {line}")
            passed += 1
        return TourResult(True, passed)

    # -- HTTP ------------------------------------------------------------------------------

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
            raise StepFailed(f"{method} {path} answered {response.status_code}: {_reason(response)}")
        found: Json = response.json()
        return found

    def user(self, user_id: str) -> str:
        """The user's token, minted once through POST /auth/token with the service key."""
        if user_id not in self.tokens:
            body = {"user_id": user_id, "ttl_s": TOKEN_TTL_S}
            self.tokens[user_id] = self.http(
                "POST", "/auth/token", token=self.service, body=body
            )["token"]
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

    # -- the steps -------------------------------------------------------------------------

    def users(self) -> list[str]:
        public = self.http("GET", "/config/public")
        self.scales = {a["code"]: a["scale"] for a in public["assets"]}
        self.rates = public["rates"]
        if self.http("GET", "/admin/payment-orders", token=self.admin, params={"limit": 1})["data"]:
            raise StepFailed("the database is not fresh: it already has payment orders")
        agency = self.http(
            "PUT",
            "/agencies/star",
            token=self.admin,
            body={"name": "Star Agency", "commission_bps": self.commission_bps},
        )
        expect("the agency's commission_bps", agency["commission_bps"], self.commission_bps)
        host = self.http(
            "PUT",
            "/users/host1",
            token=self.service,
            body={"display_name": "Host One", "agency_id": "star"},
        )
        expect("host1's agency", host["agency_id"], "star")
        for user_id, name in (("alice", "Alice Rao"), ("bob", "Bob Das")):
            self.http("PUT", f"/users/{user_id}", token=self.service, body={"display_name": name})
        me = self.http("GET", "/me", token=self.user("alice"))
        expect("alice's id in GET /me", me["id"], "alice")
        return [
            f"agency star (commission {self.commission_bps} bps); host1 in it; alice, bob",
            f"platform fee {self.rates['platform_fee_bps']} bps; "
            "user tokens from POST /auth/token (service key)",
        ]

    def topup(self) -> list[str]:
        packages = self.http("GET", "/packages")["data"]
        package = next((p for p in packages if p["id"] == TOPUP_PACKAGE_ID), None)
        if package is None:
            raise StepFailed(f"GET /packages has no {TOPUP_PACKAGE_ID!r} package")
        before = self.posted("alice")
        body = {"package_id": package["id"], "provider": "mock"}
        order, verified = self.buy("alice", body, "topup")
        bought = package["diamonds"] + package["bonus"]
        expect("the order's price", order["amount"], package["price"])
        expect("verify's 'credited'", verified["credited"], True)
        after = self.posted("alice")
        expect("alice's wallet", after, before + bought)
        return [
            f"order {order['id']} for {self.money(order['amount'], order['currency'])} "
            f"(package {package['id']}): {package['diamonds']} + {package['bonus']} bonus",
            f"verified with the mock's signature; alice's wallet {before} -> {after}",
        ]

    def gifts(self) -> list[str]:
        alice, fee_bps = self.user("alice"), self.rates["platform_fee_bps"]
        catalog = self.http("GET", "/gifts/catalog")["data"]
        item = max(catalog, key=lambda g: g["diamonds"] if g["diamonds"] <= 500 else -1)
        lines = []
        for key, body in (
            ("gift-1", {"receiver_id": "host1", "diamonds": GIFT_DIAMONDS, "message": "great!"}),
            ("gift-2", {"receiver_id": "host1", "gift_type": item["gift_type"]}),
        ):
            wallet_before = self.posted("alice")
            earnings_before = self.posted("host1", "earnings")
            answer = self.http("POST", "/wallet/send-gift", token=alice, body=body, key=key)
            gift = answer["gift"]
            diamonds = gift["diamonds"]
            host, agency, platform = split_of(
                diamonds, commission_bps=self.commission_bps, fee_bps=fee_bps
            )
            expect("host + agency + platform", gift["host_amount"] + gift["agency_amount"]
                   + gift["platform_amount"], diamonds)  # fmt: skip
            expect("the split (host, agency, platform)",
                   (gift["host_amount"], gift["agency_amount"], gift["platform_amount"]),
                   (host, agency, platform))  # fmt: skip
            expect("sender_balance", answer["sender_balance"], wallet_before - diamonds)
            expect("alice's wallet", self.posted("alice"), wallet_before - diamonds)
            expect("host1's earnings", self.posted("host1", "earnings"), earnings_before + host)
            self.gifts_sent.append(diamonds)
            self.gift_bodies.append(body)
            self.gift_answers.append(answer)
            what = gift["gift_type"] or "diamonds"
            lines.append(
                f"{what} {diamonds}: host {host} + agency {agency} + platform {platform}; "
                f"alice {wallet_before} -> {answer['sender_balance']}, "
                f"host1 earnings {earnings_before} -> {earnings_before + host}"
            )
        first = self.gift_answers[0]
        wallet_now = self.posted("alice")
        replay = self.client.post(
            "/wallet/send-gift",
            json=self.gift_bodies[0],
            headers={
                "Authorization": f"Bearer {alice}",
                "Idempotency-Key": f"demo-{self.run_id}-gift-1",
            },
        )
        expect("the replay's status", replay.status_code, 201)
        expect("the replay's Idempotent-Replayed header",
               replay.headers.get("Idempotent-Replayed"), "true")  # fmt: skip
        expect("the replay's gift id", replay.json()["gift"]["id"], first["gift"]["id"])
        expect("alice's wallet after the replay", self.posted("alice"), wallet_now)
        lines.append("the first gift sent again with its Idempotency-Key: replayed, nothing moved")
        return lines

    def metered_call(self) -> list[str]:
        alice_before = self.account("alice", "wallet")
        earnings_before = self.posted("host1", "earnings")
        rate = self.http(
            "PUT",
            "/admin/settings/call-rate",
            token=self.admin,
            body={
                "rate_per_minute": CALL_RATE_PER_MINUTE,
                "asset": "DIAMOND",
                "reason": "the demo's rate",
            },
        )
        expect("the call rate", rate["rate_per_minute"], CALL_RATE_PER_MINUTE)
        body = {"caller_id": "alice", "host_id": "host1"}
        started = self.http("POST", "/calls", token=self.service, body=body, key="call")["call"]
        expect("the call's status", started["status"], "active")
        held = self.account("alice", "wallet")
        expect("alice's held diamonds", held["pending_out"], started["hold_amount"])
        extended = self.http(
            "POST", f"/calls/{started['id']}/extend", token=self.service, key="extend"
        )["call"]
        if extended["authorized_seconds"] <= started["authorized_seconds"]:
            raise StepFailed("extending the call authorised no more time")
        ended = self.http(
            "POST",
            f"/calls/{started['id']}/end",
            token=self.service,
            body={"duration_s": CALL_DURATION_S},
            key="end",
        )["call"]
        cost = -(-CALL_DURATION_S * CALL_RATE_PER_MINUTE // 60)  # ceil
        host, agency, platform = split_of(
            cost, commission_bps=self.commission_bps, fee_bps=self.rates["platform_fee_bps"]
        )
        expect("the call's status", ended["status"], "ended")
        expect("the call's cost", ended["cost"], cost)
        expect("the split (host, agency, platform)",
               (ended["host_amount"], ended["agency_amount"], ended["platform_amount"]),
               (host, agency, platform))  # fmt: skip
        after = self.account("alice", "wallet")
        expect("alice's wallet", after["posted"], alice_before["posted"] - cost)
        expect("alice's held diamonds after the call", after["pending_out"], 0)
        earnings_after = self.posted("host1", "earnings")
        expect("host1's earnings", earnings_after, earnings_before + host)
        return [
            f"{started['id']} at {CALL_RATE_PER_MINUTE} a minute: {started['hold_amount']} held"
            f" ({started['authorized_seconds']} s), extended to {extended['hold_amount']}"
            f" ({extended['authorized_seconds']} s)",
            f"ended at {CALL_DURATION_S} s: cost {cost} = host {host} + agency {agency}"
            f" + platform {platform}; the rest released",
            f"alice {alice_before['posted']} -> {after['posted']},"
            f" host1 earnings {earnings_before} -> {earnings_after}",
        ]

    def escrow(self) -> list[str]:
        alice, bps = self.user("alice"), self.rates["escrow_platform_fee_bps"]
        bob_before = self.posted("bob", asset="INR")
        body = {
            "payee_id": "bob",
            "amount": ESCROW_AMOUNT,
            "currency": "INR",
            "reference": "logo design",
            "provider": "mock",
        }
        made = self.http("POST", "/escrows", token=alice, body=body, key="escrow")["escrow"]
        order = made["order"]
        confirm = {"order_id": order["id"], **order["checkout"]}
        self.http("POST", "/wallet/verify", token=alice, body=confirm)
        self.orders.append(order["id"])
        held = self.http("GET", f"/escrows/{made['id']}", token=alice)["escrow"]
        expect("the escrow's status after payment", held["status"], "held")
        released = self.http(
            "POST", f"/escrows/{made['id']}/release", token=alice, body={}, key="release"
        )["escrow"]
        fee = ESCROW_AMOUNT * bps // BPS
        expect("the escrow's status", released["status"], "released")
        expect("the escrow's fee", released["fee_amount"], fee)
        bob_after = self.posted("bob", asset="INR")
        expect("bob's INR wallet", bob_after, bob_before + ESCROW_AMOUNT - fee)
        return [
            f"alice pays {self.money(ESCROW_AMOUNT, 'INR')} into {made['id']} for bob: held",
            f"released: bob {self.money(ESCROW_AMOUNT - fee, 'INR')}, "
            f"platform fee {self.money(fee, 'INR')} ({bps} bps); "
            f"bob's INR wallet {self.money(bob_before, 'INR')} -> {self.money(bob_after, 'INR')}",
        ]

    def payout(self) -> list[str]:
        host = self.user("host1")
        kyc = self.http("POST", "/kyc", token=host, body=KYC)
        expect("host1's KYC status", kyc["status"], "submitted")
        approved = self.http(
            "POST", "/admin/kyc/host1/approve", token=self.admin, body={"reason": "PAN matches"}
        )
        expect("host1's KYC decision", approved["status"], "approved")
        payee = self.http(
            "PUT", "/payees/me", token=host, body={"provider": "mock", "destination": BANK}
        )
        expect("host1's payee", payee["status"], "active")
        before = self.posted("host1", "earnings")
        made = self.http(
            "POST", "/wallet/payout", token=host, body={"amount": PAYOUT_DIAMONDS}, key="payout"
        )["payout"]
        expect("the payout's amount", made["amount"], PAYOUT_DIAMONDS)
        expect("the payout in paise", made["payout_amount"], PAYOUT_DIAMONDS * 100 // made["rate"])
        deadline = time.monotonic() + PAYOUT_WAIT_S
        found = made
        while found["status"] in {"pending", "processing"} and time.monotonic() < deadline:
            time.sleep(PAYOUT_POLL_S)
            found = self.http("GET", f"/wallet/payouts/{made['id']}", token=host)["payout"]
        expect("the payout's status", found["status"], "paid")
        after = self.posted("host1", "earnings")
        expect("host1's earnings", after, before - PAYOUT_DIAMONDS)
        return [
            "host1 submits KYC (document ****234F); an admin approves; a mock bank payee",
            f"payout {made['id']}: {PAYOUT_DIAMONDS} diamonds at {made['rate']} a rupee = "
            f"{self.money(made['payout_amount'], made['payout_currency'])}, paid; "
            f"host1 earnings {before} -> {after}",
        ]

    def refund(self) -> list[str]:
        before = self.posted("alice")
        body = {"package_id": REFUND_PACKAGE_ID, "provider": "mock"}
        order, _ = self.buy("alice", body, "topup-refund")
        bought = order["diamonds"] + order["bonus"]
        amount = order["amount"] // 2
        refunded = self.http(
            "POST",
            f"/admin/payment-orders/{order['id']}/refund",
            token=self.admin,
            body={"amount": amount, "reason": "the customer asked for half back"},
            key="refund",
        )
        clawback = bought * amount // order["amount"]
        expect("the refund's status", refunded["refund"]["status"], "succeeded")
        expect("the diamonds clawed back", refunded["refund"]["diamonds"], clawback)
        expect("the order's status", refunded["order"]["status"], "partially_refunded")
        after = self.posted("alice")
        expect("alice's wallet", after, before + bought - clawback)
        self.refunded_order = refunded["order"]
        return [
            f"alice buys {bought} diamonds for {self.money(order['amount'], order['currency'])}; "
            f"wallet {before} -> {before + bought}",
            f"admin refunds {self.money(amount, order['currency'])}: {clawback} diamonds "
            f"clawed back ({bought} x {amount} / {order['amount']}); wallet -> {after}",
        ]

    def subscription(self) -> list[str]:
        alice = self.user("alice")
        plans = self.http("GET", "/plans")["data"]
        plan = next((p for p in plans if p["id"] == DIAMOND_PLAN_ID), None)
        if plan is None:
            raise StepFailed(f"GET /plans has no {DIAMOND_PLAN_ID!r} plan")
        before = self.posted("alice")
        body = {"plan_id": plan["id"], "pay_with": "wallet"}
        made = self.http("POST", "/subscriptions", token=alice, body=body, key="sub")
        expect("the subscription's status", made["subscription"]["status"], "active")
        mine = self.http("GET", "/subscriptions/me", token=alice)
        expect("alice is premium", mine["is_premium"], True)
        after = self.posted("alice")
        expect("alice's wallet", after, before - plan["price"])
        return [
            f"{plan['id']} for {self.money(plan['price'], plan['currency'])} a {plan['interval']}:"
            f" active, paid through {mine['paid_through']}; alice's wallet {before} -> {after}",
        ]

    def audit(self) -> list[str]:
        log = self.http(
            "GET", "/admin/audit-log", token=self.admin, params={"limit": AUDIT_LIMIT}
        )["data"]
        actions = sorted({entry["action"] for entry in log})
        for wanted in ("agency.put", "call_rate.set", "kyc.approve", "payment.refund"):
            if wanted not in actions:
                raise StepFailed(f"GET /admin/audit-log has no {wanted!r} entry: {actions}")
        gifts = self.http("GET", "/admin/gifts", token=self.admin)["stats"]
        expect("the gift count", gifts["count"], len(self.gifts_sent))
        expect("the gifts' diamonds", gifts["diamonds"], sum(self.gifts_sent))
        orders = self.http(
            "GET", "/admin/payment-orders", token=self.admin, params={"limit": AUDIT_LIMIT}
        )["data"]
        expect("the payment orders", sorted(o["id"] for o in orders), sorted(self.orders))
        statuses: dict[str, int] = {}
        for order in orders:
            statuses[order["status"]] = statuses.get(order["status"], 0) + 1
        top = gifts["top_receivers"][0] if gifts["top_receivers"] else {"receiver_id": "-"}
        return [
            f"audit log: {len(log)} operator actions ({', '.join(actions)})",
            f"gifts: {gifts['count']} for {gifts['diamonds']} diamonds, "
            f"top receiver {top['receiver_id']}",
            f"payment orders: {len(orders)} ("
            + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            + ")",
        ]

    def verify(self) -> list[str]:
        report = self.http("GET", "/admin/ledger/verify", token=self.admin)
        broken = [check for check in report["checks"] if not check["ok"]]
        if broken or not report["ok"]:
            raise StepFailed(
                "broken invariants: "
                + "; ".join(f"{c['invariant']}. {c['name']}: {c['problems']}" for c in broken)
            )
        lines = [
            f"{report['transfers']} transfers, {report['accounts']} accounts, "
            f"{report['open_holds']} open holds"
        ]
        lines += [f"ok {check['invariant']}. {check['name']}" for check in report["checks"]]
        return lines


def run_demo(
    settings: Settings,
    *,
    database_url: str | None,
    echo: Echo,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> int:
    """The tour on `database_url` (default: a temporary SQLite file, removed at the end); 0 when
    every step and the final verify passed, else 1. With `serve`, then serve that database."""
    with _database(database_url) as (url, where):
        coffer = build(settings.model_copy(update={"database_url": url}), first_admin_key=False)
        try:
            with coffer.database.unit_of_work() as session:
                admin = auth.create_api_key(session, role="admin", label="coffer demo")
                service = auth.create_api_key(session, role="service", label="coffer demo")
            echo(f"coffer demo: the whole product through its HTTP API, on {where}")
            with _client(coffer) as client:
                tour = Tour(client, admin_key=admin.key, service_key=service.key)
                result = tour.run(echo)
            if not result.ok:
                echo(f"the demo FAILED at step {result.failed_step}: {result.reason}")
                return 1
            echo(f"all {result.steps_passed} steps passed; the books verify")
            if serve:
                _serve(coffer, admin_key=admin.key, host=host, port=port, echo=echo)
            return 0
        finally:
            coffer.close()


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[tuple[str, str]]:
    """(the URL, how to name it): the one given, or a temporary SQLite file removed after."""
    if database_url:
        yield database_url, "the database given"
        return
    with tempfile.TemporaryDirectory(prefix="coffer-demo-") as scratch:
        path = f"{scratch}/demo.db"
        yield f"sqlite:///{path}", f"a temporary SQLite database ({path})"


@contextlib.contextmanager
def _client(coffer: Coffer) -> Iterator[httpx.Client]:
    """Starlette's TestClient: the real app over ASGI, in this process, with no socket."""
    with warnings.catch_warnings():
        # It prefers the httpx2 fork; the pinned httpx works and is what Coffer ships.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    base_url = f"http://coffer-demo{API_PREFIX}"
    with TestClient(coffer.app, base_url=base_url, client=("127.0.0.1", 50_000)) as client:
        yield client


def _serve(coffer: Coffer, *, admin_key: str, host: str, port: int, echo: Echo) -> None:
    """Leave the app up on the tour's database, with its background jobs, until Ctrl-C."""
    import uvicorn

    base = f"http://{host}:{port}"
    echo("")
    echo(f"serving the demo's database at {base} (API {base}{API_PREFIX}, docs {base}/docs)")
    echo("admin key (for the console and /api/v1/admin/*):")
    echo(admin_key)
    echo("Ctrl-C stops it")
    background = coffer.background().start()
    try:
        uvicorn.run(
            coffer.app,
            host=host,
            port=port,
            log_level=coffer.settings.log_level,
            access_log=False,
            proxy_headers=False,
        )
    finally:
        background.stop()


def _reason(response: httpx.Response) -> str:
    """The error's code and message (API.md's one shape), or the start of the body."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
