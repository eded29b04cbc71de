"""The host / agency / platform split that gifts and calls share (API.md, "send-gift").

Both shares are of the whole amount, rounded down; the host takes the remainder, so the three
always add up to the amount. A host with no agency keeps the agency's share.
"""

from __future__ import annotations

from dataclasses import dataclass

from coffer.kit.money import BPS_PER_UNIT, share_bps


@dataclass(frozen=True, slots=True)
class Split:
    host_amount: int
    agency_amount: int
    platform_amount: int

    @property
    def total(self) -> int:
        return self.host_amount + self.agency_amount + self.platform_amount


def split(amount: int, *, commission_bps: int | None, fee_bps: int) -> Split:
    """Split `amount` minor units; `commission_bps=None` when the host has no agency."""
    assert type(amount) is int and amount > 0
    assert 0 <= fee_bps <= BPS_PER_UNIT
    assert commission_bps is None or 0 <= commission_bps <= BPS_PER_UNIT - fee_bps
    agency_amount = 0 if commission_bps is None else share_bps(amount, commission_bps)
    platform_amount = share_bps(amount, fee_bps)
    made = Split(amount - agency_amount - platform_amount, agency_amount, platform_amount)
    if made.total != amount or made.host_amount < 0:  # survives python -O: it guards money
        raise ArithmeticError(f"split of {amount} does not add up: {made}")
    return made


__all__ = ["Split", "split"]
