"""When a delivery is tried again: the Standard Webhooks example schedule, as data, with jitter.

Attempt 1 goes at once; after each failure the next waits the schedule's next step, stretched by
up to `JITTER_FRACTION` at random (so endpoints that failed together do not all come back in the
same second), and never less than what the receiver asked for in `Retry-After` (up to
`RETRY_AFTER_MAX_S`). After the last step's attempt fails, the delivery is given up on.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# Seconds before attempt n+1 (index n): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
RETRY_SCHEDULE_S: tuple[int, ...] = (0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000)
ATTEMPTS_MAX = len(RETRY_SCHEDULE_S)
JITTER_FRACTION = 0.1
# A Retry-After is honoured up to the schedule's longest step: a receiver cannot park a delivery
# for ever (it would never be given up on, nor reported).
RETRY_AFTER_MAX_S = max(RETRY_SCHEDULE_S)
# After a 429 or a 5xx, the endpoint's other deliveries claimed in the same run wait this long
# (or its Retry-After, which also pauses the endpoint as a whole until then).
SLOW_DOWN_S = 30


def next_delay_s(
    attempts_made: int, *, retry_after_s: int | None, rng: random.Random
) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones; None: give up."""
    assert attempts_made >= 1
    if attempts_made >= ATTEMPTS_MAX:
        return None
    delay = RETRY_SCHEDULE_S[attempts_made] * (1 + rng.uniform(0, JITTER_FRACTION))
    if retry_after_s is not None:
        delay = max(delay, float(min(retry_after_s, RETRY_AFTER_MAX_S)))
    return delay


def parse_retry_after(value: str | None, *, now: datetime) -> int | None:
    """RFC 9110 `Retry-After`: delay seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(int(text), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - now) / timedelta(seconds=1)
    return max(0, min(int(seconds), RETRY_AFTER_MAX_S))


__all__ = [
    "ATTEMPTS_MAX",
    "RETRY_AFTER_MAX_S",
    "RETRY_SCHEDULE_S",
    "SLOW_DOWN_S",
    "next_delay_s",
    "parse_retry_after",
]
