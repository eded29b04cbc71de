"""The payout settings in `coffer.toml`: defaults, and a bad file refused with the reason."""

from __future__ import annotations

import pytest

from coffer.config import ConfigError, ShopConfig, parse_shop


def test_defaults_redeem_100_diamonds_for_a_rupee() -> None:
    payouts = ShopConfig().payouts
    assert (payouts.currency, payouts.diamonds_per_unit, payouts.minimum["DIAMOND"]) == (
        "INR", 100, 1_000,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[payouts]\ncurrency = "DIAMOND"\n', "payouts.currency"),
        ('[payouts]\ncurrency = "EUR"\n', "payouts.currency"),
        ("[payouts]\ndiamonds_per_unit = 0\n", "greater than 0"),
        ("[payouts]\ndiamonds_per_unit = 1.5\n", "diamonds_per_unit"),
        ("[payouts]\nminimum = { GOLD = 10 }\n", "unknown assets"),
        ('[payouts]\nonboarding_return_url = "ftp://x"\n', "onboarding_return_url"),
    ],
)
def test_a_bad_payout_setting_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_shop(text)
