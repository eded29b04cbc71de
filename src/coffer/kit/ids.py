"""Public ids: a short prefix naming the kind, then 20 characters of time-ordered randomness."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case


def new_id(prefix: str) -> str:
    """`pay_01hx...`: sortable by creation time (48-bit ms), 52 random bits against collisions."""
    assert prefix.isidentifier() and len(prefix) <= 8
    value = (int(time.time() * 1000) << 52) | int.from_bytes(os.urandom(7), "big") >> 4
    chars = []
    for _ in range(20):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
