"""Fixtures for the provider tests: the running fakes, adapters pointed at them, the vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coffer.providers import RazorpayProvider, StripeProvider
from tests.fakes.fixtures import razorpay_fake, stripe_fake
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake

__all__ = ["razorpay_fake", "stripe_fake"]

# A copy of /work/shared/vectors/provider_signatures.json, kept in the tree so CI has it.
VECTORS_PATH = Path(__file__).parent / "vectors" / "provider_signatures.json"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """Signature vectors produced by the official SDKs (stripe 16.1.0, razorpay 2.0.1)."""
    loaded: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def razorpay_provider(razorpay_fake: RazorpayFake) -> RazorpayProvider:
    """The Razorpay adapter over the official SDK, talking to the fake; quick retries."""
    return RazorpayProvider(**razorpay_fake.provider_options(retry_backoff_s=0.01))


@pytest.fixture
def stripe_provider(stripe_fake: StripeFake) -> StripeProvider:
    """The Stripe adapter over the official SDK, talking to the fake; no SDK retries."""
    return StripeProvider(**stripe_fake.provider_options(attempts_max=1))
