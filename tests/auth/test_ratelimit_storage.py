"""The in-memory rate-limit storage: no thread per hit, and expired keys still go away."""

from __future__ import annotations

import threading
import time

from limits import parse
from limits.strategies import SlidingWindowCounterRateLimiter

from coffer.auth.ratelimit import SweptMemoryStorage


def test_hits_start_no_threads_and_still_count() -> None:
    storage = SweptMemoryStorage()
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("50/second")
    before = threading.active_count()
    allowed = [limiter.hit(item, "coffer", "u1") for _ in range(60)]
    assert threading.active_count() == before  # upstream starts a Timer thread per hit
    assert allowed.count(True) == 50 and allowed[-1] is False


def test_expired_keys_are_swept_inline() -> None:
    storage = SweptMemoryStorage()
    storage.SWEEP_INTERVAL_S = 0.0
    storage.incr("gone", expiry=0.01)
    time.sleep(0.02)
    storage.incr("kept", expiry=60)
    assert "gone" not in storage.storage and storage.get("kept") == 1
