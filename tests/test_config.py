"""coffer.toml: defaults that make a working shop, and bad files refused with line and reason."""

from __future__ import annotations

import pytest

from coffer.config import ConfigError, ShopConfig, parse_shop


def test_defaults_are_the_documented_shop() -> None:
    shop = ShopConfig()
    assert {code: a.scale for code, a in shop.assets.items()} == {
        "INR": 2,
        "USD": 2,
        "HTG": 2,
        "DIAMOND": 0,
    }
    assert shop.topup.diamonds_per_unit["INR"] == 10 and shop.topup.minimum["INR"] == 1_000
    table = [(p.id, p.diamonds, p.bonus, p.price) for p in shop.packages]
    assert table == [
        ("starter", 100, 0, 9_900),
        ("basic", 250, 40, 22_900),
        ("popular", 500, 100, 44_900),
        ("premium", 1_000, 250, 84_900),
        ("mega", 2_500, 750, 199_900),
        ("ultra", 5_000, 2_000, 349_900),
        ("supreme", 10_000, 5_000, 599_900),
        ("ultimate", 25_000, 15_000, 1_299_900),
    ]


def test_a_good_file_overrides_defaults() -> None:
    shop = parse_shop("[topup]\ndiamonds_per_unit = { INR = 20 }\nminimum = { INR = 500 }\n")
    assert shop.topup.diamonds_per_unit == {"INR": 20} and shop.topup.minimum == {"INR": 500}


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        (
            '[[packages]]\nid = "a"\nname = "A"\ndiamonds = 10\nprice = 100\n\n[[packages]]\nid = "b"\nname = "B"\ndiamonds = -1\nprice = 100\n',
            10,
            "packages.1.diamonds",
        ),
        ("[split]\nagency_commission_bps = 6000\nplatform_fee_bps = 5000\n", 1, "split"),
        ('[calls]\nrate_per_minute = "60"\n', 2, "calls.rate_per_minute"),
        ("surprise = 1\n", 1, "surprise"),
        (
            '[[packages]]\nid = "a"\nname = "A"\ndiamonds = 10\nprice = 100\ncurrency = "EUR"\n',
            None,
            "packages",
        ),
    ],
)
def test_bad_files_name_the_line_and_the_reason(text: str, line: int | None, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_shop(text, source="coffer.toml")
    message = str(caught.value)
    assert where in message or "unknown currency" in message, message
    if line is not None:
        assert f"line {line}" in message, message


def test_toml_syntax_errors_carry_the_line() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_shop("[topup]\nminimum = {\n")
