"""Pytest fixtures for the provider fakes. Import them into a `conftest.py` to use them:

    from tests.fakes.fixtures import razorpay_fake, stripe_fake  # noqa: F401

Each yields a fresh fake, already serving on a loopback port (`fake.base_url`), for one test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.razorpay_api import RazorpayFake, running_razorpay_fake
from tests.fakes.stripe_api import StripeFake, running_stripe_fake


@pytest.fixture
def razorpay_fake() -> Iterator[RazorpayFake]:
    """A running Razorpay fake: `RazorpayProvider(**razorpay_fake.provider_options())`."""
    with running_razorpay_fake() as fake:
        yield fake


@pytest.fixture
def stripe_fake() -> Iterator[StripeFake]:
    """A running Stripe fake: `StripeProvider(**stripe_fake.provider_options())`."""
    with running_stripe_fake() as fake:
        yield fake
