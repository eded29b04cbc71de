"""Public configuration endpoints: no auth, only what a client may see."""

from __future__ import annotations

from coffer.config import ShopConfig
from coffer.db import Database
from tests.api.harness import Api, make_api

SHOP = ShopConfig()


def test_packages_are_listed_without_auth(api: Api) -> None:
    response = api.client.get("/packages")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_more"] is False and body["next_cursor"] is None
    assert [p["id"] for p in body["data"]] == [p.id for p in SHOP.packages]
    first = body["data"][0]
    assert first == {
        "id": "starter",
        "name": "Starter",
        "diamonds": 100,
        "bonus": 0,
        "price": 9_900,
        "currency": "INR",
    }


def test_gift_catalog(api: Api) -> None:
    body = api.client.get("/gifts/catalog").json()
    assert body["data"] == [{"gift_type": g.gift_type, "diamonds": g.diamonds} for g in SHOP.gifts]


def test_plans(api: Api) -> None:
    body = api.client.get("/plans").json()
    assert {p["id"]: (p["interval"], p["price"], p["currency"]) for p in body["data"]} == {
        "premium-monthly": ("month", 9_900, "INR"),
        "premium-yearly": ("year", 99_900, "INR"),
        "premium-diamond-monthly": ("month", 990, "DIAMOND"),
    }


def test_public_config_has_assets_rates_and_the_sandbox(api: Api) -> None:
    response = api.client.get("/config/public")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["default_provider"] == "mock"
    assert {a["code"]: a["scale"] for a in body["assets"]} == {
        "DIAMOND": 0,
        "HTG": 2,
        "INR": 2,
        "USD": 2,
    }
    rates = body["rates"]
    assert rates["diamonds_per_unit"]["INR"] == 10
    assert rates["topup_minimum"]["INR"] == 1_000
    assert rates["agency_commission_bps"] == 1_000 and rates["platform_fee_bps"] == 2_000
    assert rates["call"] == {"asset": "DIAMOND", "rate_per_minute": 60, "minimum_balance": 60}
    assert set(body["providers"]) == {"mock"}  # no keys configured: Razorpay and Stripe are off


def test_public_config_shows_public_keys_and_never_secrets(db: Database) -> None:
    secrets = {
        "razorpay_key_secret": "rzp_secret_" + "s" * 20,
        "razorpay_webhook_secret": "rzp_whsec_" + "w" * 20,
        "stripe_api_key": "sk_test_" + "k" * 24,
        "stripe_webhook_secret": "whsec_" + "h" * 24,
        "mock_webhook_secret": "mock_whsec_" + "m" * 20,
    }
    with make_api(
        db,
        razorpay_key_id="rzp_test_PUBLICKEY",
        stripe_publishable_key="pk_test_PUBLISHABLE",
        default_provider="razorpay",  # with two real providers the default must be named
        **secrets,
    ) as api:
        response = api.client.get("/config/public")
    assert response.status_code == 200, response.text
    text = response.text
    assert "rzp_test_PUBLICKEY" in text
    assert "pk_test_PUBLISHABLE" in text
    for value in secrets.values():
        assert value not in text
    assert "razorpay" in response.json()["providers"] and "stripe" in response.json()["providers"]
