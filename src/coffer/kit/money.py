"""Integer money maths: no floats, no Decimals, rounding stated at each call."""

from __future__ import annotations

BPS_PER_UNIT = 10_000  # basis points in 100 %


def ceil_div(numerator: int, denominator: int) -> int:
    assert denominator > 0 and numerator >= 0
    return -(-numerator // denominator)


def share_bps(amount: int, bps: int) -> int:
    """`bps` basis points of `amount`, rounded down (the remainder stays with the payee)."""
    assert amount >= 0 and 0 <= bps <= BPS_PER_UNIT
    return amount * bps // BPS_PER_UNIT


def prorate(amount: int, *, part: int, whole: int) -> int:
    """`amount * part / whole`, rounded down; exact when part == whole."""
    assert whole > 0 and 0 <= part <= whole and amount >= 0
    return amount * part // whole
