"""The operator console (issue 12), driven in headless Chromium through Playwright against a
real `coffer serve` on a temporary SQLite database, seeded through the HTTP API."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.harness import TEST_JWT_SECRET
from tests.support.servers import Server, coffer_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
README_SCREENSHOT = REPO / "docs" / "console.png"

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is required in CI for the console's browser tests", pytrace=False)
    pytest.skip(
        f"the console's browser tests need Chromium at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@dataclass
class Console:
    server: Server
    root: str
    admin_key: str
    order_id: str

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )


def _user_headers(api: httpx.Client, user_id: str) -> dict[str, str]:
    made = api.post("/auth/token", json={"user_id": user_id, "ttl_s": 3600})
    assert made.status_code in (200, 201), made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


def _seed(api: httpx.Client) -> str:
    for user_id, name in (("fan", "Fan"), ("host", "Host")):
        assert api.put(f"/users/{user_id}", json={"display_name": name}).status_code == 200
    fan = _user_headers(api, "fan")
    order = api.post("/wallet/topup", json={"diamonds": 100}, headers=fan)
    assert order.status_code == 201, order.text
    paid = api.post(
        "/wallet/verify",
        json={"order_id": order.json()["order"]["id"], **order.json()["order"]["checkout"]},
        headers=fan,
    )
    assert paid.status_code == 200, paid.text
    gift = api.post("/wallet/send-gift", json={"receiver_id": "host", "diamonds": 10}, headers=fan)
    assert gift.status_code == 201, gift.text
    kyc = api.post(
        "/kyc",
        json={
            "full_name": "Host Person",
            "document_type": "passport",
            "document_number": "P1234567",
            "document_front_url": "https://files.example.com/host/front.jpg",
            "selfie_url": "https://files.example.com/host/selfie.jpg",
            "address": "1 Main Street",
            "city": "Pune",
            "state": "MH",
            "postal_code": "411001",
        },
        headers=_user_headers(api, "host"),
    )
    assert kyc.status_code == 201, kyc.text
    order_id: str = order.json()["order"]["id"]
    return order_id


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    where = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{where / 'coffer.db'}"
    with coffer_serve(url, jwt_secret=TEST_JWT_SECRET, log_dir=where) as server:
        # A fresh database prints its first admin key, once, as the last word of its notes.
        keys = re.findall(r"\bck_[A-Za-z0-9_\-]+", server.log.read_text())
        assert keys, server.log.read_text()[-2000:]
        root = server.base_url.removesuffix("/api/v1")
        made = Console(server, root, keys[0], order_id="")
        with made.api() as api:
            made.order_id = _seed(api)
        yield made


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    context = browser.new_context(base_url=console.root, viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on(
        "console",
        # Answers the test provokes (a 401, a 404) log "Failed to load resource"; anything
        # else at error level (a CSP refusal, a script error) fails the test.
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield opened
    context.close()
    # A CSP violation or a script error shows here: the pages must run clean.
    assert errors == []


def sign_in(page: Page, key: str) -> None:
    page.goto("/console/sign-in")
    page.fill("input[name=admin_key]", key)
    page.click("main button[type=submit]")


def signed_in(page: Page, console: Console) -> Page:
    sign_in(page, console.admin_key)
    expect(page.locator("h1")).to_have_text("Overview")
    return page


def test_a_wrong_key_is_refused(page: Page, console: Console) -> None:
    page.goto("/console")
    assert page.url.endswith("/console/sign-in")  # no session: sent to sign in
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        sign_in(page, "ck_" + "x" * 43)
    assert answer.value.status == 401
    expect(page.locator(".error")).to_contain_text("not an active admin key")
    assert not any(c["name"] == "coffer_console" for c in page.context.cookies())


def test_sign_in_sets_a_strict_http_only_session_cookie(page: Page, console: Console) -> None:
    signed_in(page, console)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "coffer_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert console.admin_key not in cookie["value"]
    response = httpx.get(f"{console.root}/console", cookies={"coffer_console": cookie["value"]})
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_the_dashboard_draws_its_charts_and_tiles(page: Page, console: Console) -> None:
    signed_in(page, console)
    expect(page.locator("[data-tile=topups]")).to_have_text("1")
    expect(page.locator("[data-tile=gifts]")).to_have_text("1")
    expect(page.locator("[data-tile=kyc]")).to_have_text("1")
    expect(page.locator(".books")).to_contain_text("verified")
    expect(page.locator(".invariants li.ok")).to_have_count(6)
    for chart_id in ("chart-volume", "chart-success"):
        page.wait_for_function(
            "id => window.echarts && echarts.getInstanceByDom(document.getElementById(id))",
            arg=chart_id,
        )
        drawn: dict[str, Any] = page.evaluate(
            """id => {
                const el = document.getElementById(id);
                const option = echarts.getInstanceByDom(el).getOption();
                const canvas = el.querySelector('canvas');
                return {
                    series: option.series.map(s => s.data.length),
                    points: option.series.flatMap(s => s.data).filter(v => v).length,
                    width: canvas ? canvas.width : 0,
                    height: canvas ? canvas.height : 0,
                };
            }""",
            chart_id,
        )
        assert drawn["series"] and all(n == 30 for n in drawn["series"]), drawn
        assert drawn["points"] > 0 and drawn["width"] > 0 and drawn["height"] > 0, drawn
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    if not README_SCREENSHOT.exists() or os.environ.get("COFFER_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)


def test_search_transactions_and_export_them(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.click("nav >> text=Transactions")
    page.fill("#tx-search input[name=user_id]", "fan")
    page.fill("#tx-search input[name=type]", "gift")
    page.click("#tx-search button[type=submit]")
    rows = page.locator("#tx-results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("gift")
    expect(rows.first).to_contain_text("host")
    expect(page.locator("#tx-summary")).to_contain_text("gift")
    with page.expect_download() as download:
        page.click("#tx-csv")
    exported = Path(download.value.path()).read_text()
    lines = exported.strip().splitlines()
    assert lines[0].startswith("id,group_id,created_at,type,status") and len(lines) == 2
    assert ",gift," in lines[1]


def test_open_a_users_ledger_and_balance_at_an_instant(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.click("nav >> text=Users")
    page.fill("main input[name=user_id]", "fan")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Fan")
    expect(page.locator("#ledger tbody tr")).not_to_have_count(0)
    expect(page.locator("#ledger")).to_contain_text("gift")
    expect(page.locator("#orders")).to_contain_text(console.order_id)
    page.fill("input[name=at]", "2000-01-01T00:00:00")
    page.click("main button:has-text('Show')")
    expect(page.locator("#balance-at")).to_contain_text("2000-01-01 00:00:00")
    expect(page.locator("#balance-at td.num").first).to_have_text("0")


def test_approve_a_kyc(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.click("nav >> text=KYC")
    row = page.locator("#kyc tr[data-user=host]")
    row.locator("form[action$='/approve'] input[name=reason]").fill("documents match")
    row.locator("form[action$='/approve'] button").click()
    expect(page.locator(".notice")).to_have_text("KYC approved.")
    with console.api() as api:
        assert api.get("/admin/kyc/host").json()["status"] == "approved"
        (entry,) = api.get("/admin/audit-log", params={"action": "kyc.approve"}).json()["data"]
    assert entry["reason"] == "documents match" and entry["subject_id"] == "host"


def test_refund_an_order_then_see_it_in_the_audit_log(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.goto("/console/users/fan")
    form = page.locator(f"tr[data-order={console.order_id}] form")
    form.locator("input[name=amount]").fill("500")
    form.locator("input[name=reason]").fill("customer asked")
    form.locator("button").click()
    expect(page.locator(".notice")).to_have_text("Refund made.")
    page.click("nav >> text=Audit log")
    expect(page.locator("#audit")).to_contain_text("payment.refund")
    expect(page.locator("#audit")).to_contain_text("customer asked")
    with console.api() as api:
        order = api.get(f"/admin/payment-orders/{console.order_id}").json()
    assert order["order"]["refunded_amount"] == 500 and len(order["refunds"]) == 1


def test_a_double_submitted_refund_form_refunds_once(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.goto("/console/users/fan")
    form = page.locator(f"tr[data-order={console.order_id}] form")
    fields = {
        name: form.locator(f"input[name={name}]").get_attribute("value") or ""
        for name in ("csrf_token", "form_key")
    }
    session = {c["name"]: c["value"] for c in page.context.cookies()}
    url = f"{console.root}/console/orders/{console.order_id}/refund"
    body = {**fields, "amount": "100", "reason": "twice"}
    with console.api() as api:  # what other tests on this server refunded before
        before = api.get(f"/admin/payment-orders/{console.order_id}").json()["refunds"]
    with httpx.Client(cookies=session) as client:
        answers = [client.post(url, data=body).status_code for _ in range(2)]
    assert answers == [303, 303]
    with console.api() as api:
        refunds = api.get(f"/admin/payment-orders/{console.order_id}").json()["refunds"]
    made = [r for r in refunds if r["id"] not in {b["id"] for b in before}]
    assert [(r["amount"], r["reason"]) for r in made] == [(100, "twice")]


def test_freeze_a_wallet(page: Page, console: Console) -> None:
    signed_in(page, console)
    page.goto("/console/users/host")
    page.locator("form[action$='/freeze'] input[name=reason]").fill("chargeback ring")
    page.locator("form[action$='/freeze'] button").click()
    expect(page.locator(".notice")).to_have_text("Wallet frozen.")
    expect(page.locator("h1")).to_contain_text("frozen")
    with console.api() as api:
        (entry,) = api.get("/admin/audit-log", params={"action": "user.freeze"}).json()["data"]
    assert entry["subject_id"] == "host" and entry["reason"] == "chargeback ring"


def test_a_form_posted_without_its_csrf_token_is_refused(page: Page, console: Console) -> None:
    signed_in(page, console)
    session = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=console.root, cookies=session) as client:
        assert client.get("/console/users/fan").status_code == 200  # the session is good
        bare = client.post("/console/users/fan/freeze", data={"reason": "no token"})
        wrong = client.post(
            "/console/users/fan/freeze", data={"reason": "bad", "csrf_token": "x" * 43}
        )
        mine = client.get("/console/users/fan").text
    assert bare.status_code == 403 and wrong.status_code == 403
    assert "frozen" not in mine.split("<h1>")[1].split("</h1>")[0]
    with console.api() as api:
        frozen = api.get("/admin/audit-log", params={"subject_id": "fan"}).json()["data"]
    assert [e for e in frozen if e["action"] == "user.freeze"] == []


def test_the_tiles_follow_the_event_stream(page: Page, console: Console) -> None:
    """A gift made through the API shows on the overview within seconds: the console's event
    stream says "changed" and the tiles re-read, long before their 30 s safety-net timer."""
    signed_in(page, console)
    before = int(page.locator("[data-tile=gifts]").inner_text())
    page.wait_for_timeout(500)  # the page's EventSource is open
    with console.api() as api:
        fan = _user_headers(api, "fan")
        sent = api.post(
            "/wallet/send-gift", json={"receiver_id": "host", "diamonds": 1}, headers=fan
        )
        assert sent.status_code == 201, sent.text
    # Well inside the 30 s timer, with room for a machine busy with the rest of the suite.
    expect(page.locator("[data-tile=gifts]")).to_have_text(str(before + 1), timeout=15_000)
    with console.api() as api:  # the stream asks for a signed-in console session
        assert api.get(f"{console.root}/console/live").status_code in (303, 401, 403)


def test_every_screen_opens(page: Page, console: Console) -> None:
    signed_in(page, console)
    for path in (
        "/console/transactions",
        "/console/users",
        "/console/users/fan",
        "/console/kyc?status=all",
        "/console/payouts",
        "/console/payouts?status=failed",
        "/console/escrows",
        "/console/disputes",
        "/console/webhooks",
        "/console/alerts",
        "/console/audit-log",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1")).to_be_visible()
    response = page.goto("/console/payouts?cursor=not-a-cursor")
    assert response is not None and response.status == 400  # refused, with its reason
