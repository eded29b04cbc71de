"""The tour's steps, in order: each makes its requests, checks its figures against the rates
the server publishes, and returns the lines it prints."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from coffer.demo.caller import BPS, Caller, Json, StepFailed, expect, split_of

Echo = Callable[[str], None]

PAYOUT_WAIT_S = 5.0  # the sandbox pays at once; a real server's answer may lag a moment
PAYOUT_POLL_S = 0.05
AUDIT_LIMIT = 100
# The tour's figures: alice's top-up (5000 + 2000 bonus) covers the gifts, the call's holds and
# a month of premium, and host1's share of the gifts covers the payout (at least 1000).
COMMISSION_BPS = 1_000  # star agency's own 10 %
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


@dataclass(frozen=True)
class TourResult:
    ok: bool
    steps_passed: int
    failed_step: str | None = None
    reason: str | None = None


class Tour(Caller):
    """The steps, in order, against one client; each returns the lines it prints."""

    def __init__(self, client: httpx.Client, *, admin_key: str, service_key: str) -> None:
        super().__init__(client, admin_key=admin_key, service_key=service_key)
        self.rates: Json = {}
        self.commission_bps = COMMISSION_BPS
        self.gifts_sent: list[int] = []
        self.gift_bodies: list[Json] = []
        self.gift_answers: list[Json] = []

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
            shares = (gift["host_amount"], gift["agency_amount"], gift["platform_amount"])
            expect("host + agency + platform", sum(shares), diamonds)
            expect("the split (host, agency, platform)", shares, (host, agency, platform))
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
        replayed = replay.headers.get("Idempotent-Replayed")
        expect("the replay's Idempotent-Replayed header", replayed, "true")
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
        shares = (ended["host_amount"], ended["agency_amount"], ended["platform_amount"])
        expect("host + agency + platform", sum(shares), cost)
        expect("the split (host, agency, platform)", shares, (host, agency, platform))
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
        log = self.http("GET", "/admin/audit-log", token=self.admin, params={"limit": AUDIT_LIMIT})[
            "data"
        ]
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
        stats = self.http("GET", "/admin/stats", token=self.admin)
        expect("the stats' payment count", stats["payments"]["count"], len(self.orders))
        expect("the stats' gift count", stats["gifts"]["count"], len(self.gifts_sent))
        moved = self.http(
            "GET", "/admin/transactions", token=self.admin, params={"type": "gift", "limit": 1}
        )["summary"]
        return [
            f"audit log: {len(log)} operator actions ({', '.join(actions)})",
            f"gifts: {gifts['count']} for {gifts['diamonds']} diamonds, "
            f"top receiver {top['receiver_id']}",
            f"payment orders: {len(orders)} ("
            + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            + ")",
            f"stats: {stats['platform']['total_users']} users, "
            f"{stats['platform']['diamonds_in_circulation']} diamonds in circulation, "
            f"{stats['transactions']['count']} transfers in the last 30 days",
            "transactions of type gift: "
            + ", ".join(f"{line['count']} {line['status']} for {line['sum']}" for line in moved),
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
