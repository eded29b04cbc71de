"""Sandbox and live (DESIGN.md, "Payments"): when the mock provider is on, what a provider that is
off answers, and what production refuses at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from coffer.cli import app as cli_app
from coffer.config import ConfigError, Settings
from coffer.db import Database
from coffer.providers.mock import MockProvider
from coffer.server import MOCK_ANNOUNCEMENT, assemble, build
from tests.api.harness import TEST_JWT_SECRET, assert_error, make_api, make_settings
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean, topup, verify, wallet_balance

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120


def _provider_off(response: object, provider: str) -> str:
    details = assert_error(response, 422, "validation_error")  # type: ignore[arg-type]
    assert details["provider"] == provider, details
    assert [f["field"] for f in details["fields"]] == ["provider"]
    message: str = response.json()["error"]["message"]  # type: ignore[attr-defined]
    return message


@pytest.fixture(autouse=True)
def _no_coffer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's COFFER_* variables must not leak into these settings."""
    for name in list(os.environ):
        if name.startswith("COFFER_") and not name.startswith("COFFER_TEST_"):
            monkeypatch.delenv(name)


# -- the policy, from settings alone ----------------------------------------------------------


def test_mock_is_on_in_development_while_no_real_provider_is_configured() -> None:
    settings = Settings()
    assert settings.env == "development" and settings.mock_enabled is None
    assert settings.mock_on and settings.provider_default == "mock"
    assert settings.startup_refusals() == []


def test_production_turns_the_mock_off_whatever_else_is_set() -> None:
    settings = Settings(env="production", jwt_secret=TEST_JWT_SECRET)
    assert not settings.mock_on
    assert "production" in (settings.mock_off_reason or "")
    assert settings.provider_default is None
    assert settings.startup_refusals() == []


# -- through the app --------------------------------------------------------------------------


def test_mock_refused_when_razorpay_configured(db: Database, razorpay_fake: RazorpayFake) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        response = api.client.post(
            "/wallet/topup",
            json={"package_id": "popular", "provider": "mock"},
            headers=api.user("mallory"),
        )
        message = _provider_off(response, "mock")
        assert "razorpay" in message and "COFFER_MOCK_ENABLED" in message
        # The default is the real provider, never the sandbox.
        order = topup(api, "asha")
        assert order["provider"] == "razorpay"
        assert api.client.get("/config/public").json()["default_provider"] == "razorpay"
        assert set(api.client.get("/config/public").json()["providers"]) == {"razorpay"}
        assert wallet_balance(api, "mallory") == 0
        assert_books_clean(api)


def test_topup_naming_disabled_provider_is_422(db: Database) -> None:
    with make_api(db, mock_enabled=False) as api:
        for provider, variable in (
            ("mock", "COFFER_MOCK_ENABLED"),
            ("stripe", "COFFER_STRIPE_API_KEY"),
            ("razorpay", "COFFER_RAZORPAY_KEY_ID"),
        ):
            response = api.client.post(
                "/wallet/topup",
                json={"package_id": "popular", "provider": provider},
                headers=api.user("u1"),
            )
            assert variable in _provider_off(response, provider)
        # No provider named and none on: a 422 too, never a quiet pick of another one.
        response = api.client.post(
            "/wallet/topup", json={"package_id": "popular"}, headers=api.user("u1")
        )
        assert_error(response, 422, "validation_error")
        listed = api.client.get("/wallet/payment-orders", headers=api.user("u1"))
        assert listed.status_code == 200 and listed.json()["data"] == []


def test_verify_and_webhook_of_a_mock_order_once_the_mock_is_off_are_422(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db) as sandbox:
        order = topup(sandbox, "u1")
    with make_api(db, **razorpay_fake.settings_values()) as live:
        _provider_off(verify(live, "u1", order), "mock")
        body, headers = MockProvider(webhook_secret="anything").build_webhook(
            "payment.succeeded", provider_order_id=order["provider_order_id"]
        )
        _provider_off(live.client.post("/webhooks/mock", content=body, headers=headers), "mock")
        assert wallet_balance(live, "u1") == 0
        assert_books_clean(live)


def test_mock_enabled_true_beside_razorpay_is_on_and_announced_at_every_start(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    for _start in range(2):
        with structlog.testing.capture_logs() as logs:
            built = make_api(db, mock_enabled=True, **razorpay_fake.settings_values())
            with built as api:
                order = topup(api, "u1", package_id="starter", provider="mock")
                assert verify(api, "u1", order).status_code == 200
        announced = [e for e in logs if e["event"] == "mock_provider_enabled"]
        assert len(announced) == 1, logs
        assert announced[0]["log_level"] == "warning"
        assert announced[0]["message"] == MOCK_ANNOUNCEMENT
        assert announced[0]["real_providers"] == ["razorpay"]
    # Without the override nothing is announced: the mock is simply off.
    with structlog.testing.capture_logs() as logs, make_api(db, **razorpay_fake.settings_values()):
        pass
    assert not [e for e in logs if e["event"] == "mock_provider_enabled"]


def test_mock_enabled_true_refused_in_production(db: Database) -> None:
    settings = make_settings(db, env="production", mock_enabled=True)
    with pytest.raises(ConfigError, match="COFFER_MOCK_ENABLED=true is refused in production"):
        assemble(settings, db)
    with pytest.raises(ConfigError, match="COFFER_MOCK_ENABLED=true is refused in production"):
        build(settings, run_migrations=False)


def test_production_requires_jwt_secret(db: Database) -> None:
    settings = make_settings(db, env="production", jwt_secret=None)
    with pytest.raises(ConfigError, match="COFFER_JWT_SECRET is required in production"):
        assemble(settings, db)
    # Development keeps generating one and storing it.
    developing = assemble(make_settings(db, jwt_secret=None), db)
    assert developing.rate_limiter is not None
    developing.rate_limiter.close()  # the database belongs to the fixture


def test_production_with_its_secret_serves_without_the_mock(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, env="production", **stripe_fake.settings_values()) as api:
        assert set(api.client.get("/config/public").json()["providers"]) == {"stripe"}
        response = api.client.post(
            "/wallet/topup",
            json={"diamonds": 800, "currency": "USD", "provider": "mock"},
            headers=api.user("u1"),
        )
        assert "production" in _provider_off(response, "mock")


def test_default_provider_that_is_off_is_refused_at_startup(db: Database) -> None:
    with pytest.raises(ConfigError, match="COFFER_DEFAULT_PROVIDER=stripe names a provider"):
        assemble(make_settings(db, default_provider="stripe"), db)
    with pytest.raises(ConfigError, match="COFFER_DEFAULT_PROVIDER=mock names a provider"):
        assemble(make_settings(db, default_provider="mock", mock_enabled=False), db)


def test_several_real_providers_need_a_named_default(
    db: Database, razorpay_fake: RazorpayFake, stripe_fake: StripeFake
) -> None:
    both = {**razorpay_fake.settings_values(), **stripe_fake.settings_values()}
    with pytest.raises(ConfigError, match="COFFER_DEFAULT_PROVIDER is required"):
        assemble(make_settings(db, **both), db)
    with make_api(db, default_provider="stripe", **both) as api:
        assert api.client.get("/config/public").json()["default_provider"] == "stripe"


def test_serve_refuses_to_start_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COFFER_DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("COFFER_ENV", "production")
    monkeypatch.setenv("COFFER_MOCK_ENABLED", "true")
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2, result.output
    assert "refusing to start" in result.output
    assert "COFFER_MOCK_ENABLED=true is refused in production" in result.output
    assert "COFFER_JWT_SECRET is required in production" in result.output
    assert not (tmp_path / "never.db").exists()  # refused before anything was touched
    token = CliRunner().invoke(cli_app, ["token", "u1"])
    assert token.exit_code == 2 and "COFFER_JWT_SECRET is required" in token.output


# -- the mock's secret survives a restart ----------------------------------------------------

_SECOND_PROCESS = """
import json, sys
from coffer.db import Database
from tests.api.harness import make_api
database = Database.connect(sys.argv[1])
order = json.loads(sys.argv[2])
with make_api(database) as api:
    response = api.client.post(
        "/wallet/verify",
        json={"order_id": order["id"], "payment_id": order["checkout"]["payment_id"],
              "signature": order["checkout"]["signature"]},
        headers=api.user("u1"),
    )
print(json.dumps({"status": response.status_code, "body": response.json()}))
database.dispose()
"""


def test_mock_secret_survives_restart(db: Database) -> None:
    # The second instance runs in a process of its own, as after a restart: nothing it could
    # share with the first but the database.
    with make_api(db) as first:
        order = topup(first, "u1", package_id="starter")
    url = db.engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS, url, json.dumps(order)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200, answer
    assert answer["body"]["order"]["status"] == "succeeded"
    with make_api(db) as third:
        assert wallet_balance(third, "u1") == 100
        assert_books_clean(third)
